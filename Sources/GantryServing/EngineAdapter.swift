import Foundation
public import GantryCore

/// A command line and environment that starts one engine instance.
public struct EngineCommand: Sendable, Equatable {
    public var arguments: [String]
    public var environment: [String: String]

    public init(arguments: [String], environment: [String: String]) {
        self.arguments = arguments
        self.environment = environment
    }
}

/// What Gantry must know about one inference engine to run it: how to start it on a port with a
/// model, a context size and GPUs, and where it answers health and metrics.
public protocol EngineAdapter: Sendable {
    /// The engine name deployments use (`llama-cpp`, `vllm`, ...).
    var name: String { get }
    /// Answers 200 once the model is loaded.
    var healthPath: String { get }
    /// Prometheus metrics of the engine.
    var metricsPath: String { get }
    /// Whether the program can be started on this machine.
    func isInstalled() async -> Bool
    /// The program and the arguments Gantry sets (model, address, context, threads, GPUs).
    func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String]
    /// The engine project's published server image, for pods (`gpu`: a CUDA build is wanted);
    /// nil when it has none and an operator must name one.
    func containerImage(gpu: Bool) -> String?
    /// How many leading managed arguments name the local program; a pod runs the image's own
    /// program (`containerCommand`) with the rest.
    var programArgumentCount: Int { get }
    /// The program in the image; nil keeps the managed arguments' own program words.
    var containerCommand: [String]? { get }
}

extension EngineAdapter {
    public var healthPath: String { "/health" }
    public var metricsPath: String { "/metrics" }
    public func containerImage(gpu: Bool) -> String? { nil }
    public var programArgumentCount: Int { 1 }
    public var containerCommand: [String]? { nil }

    /// The managed arguments, then the deployment's own, with the engine pinned to its GPUs.
    public func command(for spec: EngineLaunchSpec, host: String, port: Int) -> EngineCommand {
        EngineCommand(
            arguments: managedArguments(for: spec, host: host, port: port) + spec.extraArguments,
            environment: Self.gpuEnvironment(spec))
    }

    /// Pins the engine to its GPUs. CUDA takes UUIDs as well as indices, and UUIDs stay right when
    /// indices are renumbered; an empty value hides every GPU from a CPU instance.
    static func gpuEnvironment(_ spec: EngineLaunchSpec) -> [String: String] {
        ["CUDA_VISIBLE_DEVICES": spec.gpuUUIDs.joined(separator: ",")]
    }
}

/// llama.cpp's `llama-server`.
public struct LlamaCppAdapter: EngineAdapter {
    public static let name = EngineName.llamaCpp
    public var name: String { Self.name }
    /// Path of the `llama-server` binary.
    public var binary: String

    public init(binary: String) {
        self.binary = binary
    }

    public func isInstalled() async -> Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// llama.cpp's published server images (CPU, and CUDA).
    public func containerImage(gpu: Bool) -> String? {
        gpu ? "ghcr.io/ggml-org/llama.cpp:server-cuda" : "ghcr.io/ggml-org/llama.cpp:server"
    }
    public var containerCommand: [String]? { ["/app/llama-server"] }

    /// The context limit becomes the context size, so the engine enforces it too; `--alias` makes
    /// it report the deployment name as its model. With GPUs every layer is offloaded. The
    /// revision's own arguments come last; the registry refuses those that would override these.
    public func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String] {
        var arguments = [
            binary,
            "--model", spec.modelPath,
            "--host", host,
            "--port", String(port),
            "--ctx-size", String(spec.contextLimit),
            "--threads", String(spec.cpuThreads),
            "--parallel", "1",
            "--alias", spec.deploymentName,
            "--offline",
            "--metrics",
            "--no-webui",
        ]
        if spec.gpuCount > 0 { arguments += ["--n-gpu-layers", "999"] }
        return arguments
    }
}

/// vLLM's OpenAI-compatible server (`vllm serve`).
public struct VLLMAdapter: EngineAdapter {
    public static let name = "vllm"
    public var name: String { Self.name }
    public var program: String

    public init(program: String = "vllm") {
        self.program = program
    }

    public func isInstalled() async -> Bool { ExternalCommand.exists(program) }
    public func containerImage(gpu: Bool) -> String? { "vllm/vllm-openai:latest" }
    public var programArgumentCount: Int { 2 }
    public var containerCommand: [String]? { ["vllm", "serve"] }

    public func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String] {
        let arguments = [
            program, "serve", spec.modelPath,
            "--host", host,
            "--port", String(port),
            "--served-model-name", spec.deploymentName,
            "--max-model-len", String(spec.contextLimit),
            "--tensor-parallel-size", String(max(1, spec.gpuCount)),
        ]
        return arguments
    }
}

/// SGLang's server (`python -m sglang.launch_server`).
public struct SGLangAdapter: EngineAdapter {
    public static let name = "sglang"
    public var name: String { Self.name }
    public var python: String

    public init(python: String = "python3") {
        self.python = python
    }

    /// Importing sglang costs seconds, so only its package is looked for.
    public func isInstalled() async -> Bool {
        guard ExternalCommand.exists(python) else { return false }
        let probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('sglang') is None)"
        return (try? await ExternalCommand.run([python, "-c", probe])) != nil
    }

    public func containerImage(gpu: Bool) -> String? { "lmsysorg/sglang:latest" }
    public var programArgumentCount: Int { 3 }
    public var containerCommand: [String]? { ["python3", "-m", "sglang.launch_server"] }

    public func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String] {
        let arguments = [
            python, "-m", "sglang.launch_server",
            "--model-path", spec.modelPath,
            "--host", host,
            "--port", String(port),
            "--served-model-name", spec.deploymentName,
            "--context-length", String(spec.contextLimit),
            "--tp-size", String(max(1, spec.gpuCount)),
        ]
        return arguments
    }
}

/// Hugging Face Text Generation Inference (`text-generation-launcher`), which serves the OpenAI
/// chat API under `/v1` next to its own.
public struct TGIAdapter: EngineAdapter {
    public static let name = "tgi"
    public var name: String { Self.name }
    public var program: String

    public init(program: String = "text-generation-launcher") {
        self.program = program
    }

    public func isInstalled() async -> Bool { ExternalCommand.exists(program) }

    public func containerImage(gpu: Bool) -> String? { "ghcr.io/huggingface/text-generation-inference:latest" }
    public var containerCommand: [String]? { ["text-generation-launcher"] }

    public func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String] {
        var arguments = [
            program,
            "--model-id", spec.modelPath,
            "--hostname", host,
            "--port", String(port),
            "--max-total-tokens", String(spec.contextLimit),
            "--max-input-tokens", String(max(1, spec.contextLimit - 1)),
        ]
        if spec.gpuCount > 1 { arguments += ["--num-shard", String(spec.gpuCount)] }
        return arguments
    }
}

/// Any OpenAI-compatible server, started from an operator-configured template (server
/// configuration, never the API, so admins of the API cannot run arbitrary programs).
///
/// Placeholders: `{model}`, `{host}`, `{port}`, `{context}`, `{name}`, `{threads}`, `{gpus}`
/// (comma-separated UUIDs), `{gpu_count}`. Arguments are split on spaces before substitution,
/// so a path with spaces stays one argument.
public struct CustomCommandAdapter: EngineAdapter {
    public static let name = "custom"
    public var name: String { Self.name }
    public var template: String
    public var healthPath: String

    public init(template: String, healthPath: String = "/health") {
        self.template = template
        self.healthPath = healthPath
    }

    public func isInstalled() async -> Bool {
        guard let program = template.split(separator: " ").first else { return false }
        return ExternalCommand.exists(String(program))
    }

    public func managedArguments(for spec: EngineLaunchSpec, host: String, port: Int) -> [String] {
        let values = [
            "{model}": spec.modelPath, "{host}": host, "{port}": String(port), "{context}": String(spec.contextLimit),
            "{name}": spec.deploymentName, "{threads}": String(spec.cpuThreads),
            "{gpus}": spec.gpuUUIDs.joined(separator: ","), "{gpu_count}": String(spec.gpuCount),
        ]
        let arguments = template.split(separator: " ").map { word in
            values.reduce(String(word)) { text, pair in text.replacingOccurrences(of: pair.key, with: pair.value) }
        }
        return arguments
    }
}
