import GantryCore

/// How far an engine's own `usage` can be trusted for a request's sequences.
enum EngineUsageReporting {
    /// Whether the engine behind `engine` (a deployment's engine name) counts every sequence of a
    /// request in its `usage`. vLLM, SGLang and TGI sum them. llama-server 0.3.36 answers `n` = 2,
    /// or a list of two prompts, with two choices of 10 tokens each and a `usage` of 10 completion
    /// tokens (measured): a request for several sequences on it would be metered for one.
    static func countsEverySequence(engine: String) -> Bool {
        engine != EngineName.llamaCpp
    }

    /// The 400 for a request of several sequences to an engine that counts one.
    static func severalSequencesRefused(_ parsed: InferenceRequest, deployment: String) -> GantryError {
        let field = parsed.prompts > 1 ? "prompt" : "n"
        return GantryError.invalid(
            "model '\(deployment)' runs on llama.cpp, whose usage counts one sequence only: send n = 1 and a single prompt",
            param: field, code: "unsupported_parameter")
    }
}
