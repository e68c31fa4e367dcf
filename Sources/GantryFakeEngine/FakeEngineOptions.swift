// gantry-fake-engine: a FAKE OpenAI-compatible engine for benchmarks (bench/gateway.sh).
// It runs no model: every answer is canned. It exists to measure what a gateway in front of an
// engine costs, so it must be much faster than any proxy put in front of it.

/// Command-line settings of the fake engine. Unknown arguments are ignored (with a note on
/// stderr), so that Gantry's custom engine template may pass whatever it passes (`--model PATH`).
struct FakeEngineOptions: Sendable {
    var host = "127.0.0.1"
    var port = 8000
    var threads = 1
    /// Content chunks per streamed answer.
    var streamEvents = 16
    /// Delay between stream events, in milliseconds (0: the whole stream is written at once).
    var eventDelayMs = 0
    /// The model id reported by `/v1/models` and in answers.
    var modelName = "fake"
    /// A wait before listening, as a real engine's model load: a roll-out takes this long per
    /// instance (the failover test kills the leader while one is under way).
    var startupDelayMs = 0

    static let usage = """
        gantry-fake-engine: a FAKE OpenAI-compatible engine for benchmarks. It runs no model and
        answers every request with canned, fixed-size content; use it only to measure what sits
        in front of it (bench/gateway.sh).

        Usage: gantry-fake-engine [options]
          --host HOST            address to listen on (default 127.0.0.1)
          --port PORT            port to listen on (default 8000)
          --threads N            event loop threads (default 1)
          --stream-events N      content chunks per streamed answer (default 16)
          --event-delay-ms MS    delay between stream events (default 0: written at once)
          --served-model-name ID model id in answers and /v1/models (default fake)
          --startup-delay-ms MS  wait before listening, as a model load would (default 0)
          --model PATH           accepted and ignored (engine templates pass it)
          -h, --help             this text
        Unknown arguments are ignored.

        Endpoints: GET /health, GET /stats (held streams running, and the most at once since
        POST /stats/reset), GET /v1/models, POST /v1/chat/completions, POST /v1/completions
        ("stream": true gives N chunks, a usage chunk with stream_options.include_usage, then
        [DONE]), POST /v1/embeddings, POST /tokenize.
        """

    /// Parses `--flag value` and `--flag=value`. Returns nil after printing help.
    static func parse(_ arguments: [String]) -> FakeEngineOptions? {
        var options = FakeEngineOptions()
        var index = 0
        func warn(_ message: String) { FileHandleStderr.write("gantry-fake-engine: \(message)\n") }
        while index < arguments.count {
            var name = arguments[index]
            var value: String?
            if name.hasPrefix("--"), let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            let known = [
                "--host", "--port", "--threads", "--stream-events", "--event-delay-ms", "--served-model-name", "--model",
                "--startup-delay-ms",
            ]
            if name == "-h" || name == "--help" {
                print(usage)
                return nil
            }
            guard known.contains(name) else {
                warn("ignoring argument \(arguments[index])")
                index += 1
                continue
            }
            if value == nil {
                if index + 1 < arguments.count {
                    value = arguments[index + 1]
                    index += 1
                } else {
                    warn("\(name) needs a value; ignored")
                    break
                }
            }
            let text = value ?? ""
            func number(_ minimum: Int) -> Int? {
                guard let parsed = Int(text), parsed >= minimum else {
                    warn("\(name) \(text): not a number >= \(minimum); ignored")
                    return nil
                }
                return parsed
            }
            switch name {
            case "--host": options.host = text
            case "--port": options.port = number(0) ?? options.port
            case "--threads": options.threads = number(1) ?? options.threads
            case "--stream-events": options.streamEvents = number(0) ?? options.streamEvents
            case "--event-delay-ms": options.eventDelayMs = number(0) ?? options.eventDelayMs
            case "--served-model-name": options.modelName = text.isEmpty ? options.modelName : text
            case "--startup-delay-ms": options.startupDelayMs = number(0) ?? options.startupDelayMs
            default: break  // --model: accepted, unused
            }
            index += 1
        }
        return options
    }
}
