import Foundation
public import GantryCore

/// How llama.cpp's `llama-server` is started and asked whether it is ready.
public struct LlamaCppEngine: Sendable {
    public static let name = "llama-cpp"

    /// Path of the `llama-server` binary.
    public var binary: String
    /// CPU threads per instance. On a busy 2-core machine `-t 1` keeps ~75 tok/s where `-t 2`
    /// collapses to ~2 tok/s, so tests and CI run with 1.
    public var threads: Int

    public init(binary: String, threads: Int) {
        self.binary = binary
        self.threads = threads
    }

    /// Arguments for one instance listening on 127.0.0.1:`port`. The context limit becomes the
    /// context size, so the engine itself enforces it too; `-a` makes the engine report the
    /// deployment name as its model. The version's own arguments come last; the registry refuses
    /// those that would override what is set here.
    public func arguments(for spec: EngineLaunchSpec, port: Int) -> [String] {
        let managed = [
            "--model", spec.modelPath,
            "--host", "127.0.0.1",
            "--port", String(port),
            "--ctx-size", String(spec.contextLimit),
            "--threads", String(threads),
            "--parallel", "1",
            "--alias", spec.deploymentName,
            "--offline",
            "--metrics",
            "--no-webui",
        ]
        return managed + spec.extraArguments
    }

    /// `/health` answers 200 once the model is loaded and 503 while loading.
    public static let healthPath = "/health"
}
