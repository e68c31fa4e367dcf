/// Engine arguments a model version or a deployment may add. Flags Gantry sets itself when it
/// starts an engine (port, host, model, API key, served name, context size, threads, GPU layers,
/// parallelism across GPUs) would detach the instance from its route, its model file, its
/// enforced context limit or the resources reserved for it, so they are refused.
public enum EngineArguments {
    public static let maxCount = 64

    public static let reservedFlags: Set<String> = [
        "--host", "--port", "-m", "--model", "--model-path", "--model-id", "--api-key", "--api-key-file", "-a", "--alias",
        "--served-model-name", "-c", "--ctx-size", "--max-model-len", "--context-length", "--max-total-tokens", "-t",
        "--threads", "-ngl", "--n-gpu-layers", "--gpu-layers", "--tensor-parallel-size", "--tp-size", "--num-shard",
        "--hostname",
    ]

    /// Throws `.invalid` (param `engine_args`) for too many, empty or overlong arguments, or a reserved flag.
    public static func validate(_ arguments: [String]) throws {
        guard arguments.count <= maxCount else {
            throw GantryError.invalid("at most \(maxCount) engine arguments are allowed", param: "engine_args")
        }
        for argument in arguments {
            guard !argument.isEmpty, argument.utf8.count <= 512, !argument.contains("\0") else {
                throw GantryError.invalid("engine arguments must be 1-512 characters each", param: "engine_args")
            }
            let flag = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            guard !reservedFlags.contains(flag) else {
                throw GantryError.invalid(
                    "engine argument '\(flag)' is set by Gantry and cannot be overridden", param: "engine_args")
            }
        }
    }
}
