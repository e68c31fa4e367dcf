/// Engine names that code outside the engine adapters must recognise. A deployment's `engine`
/// is one of these strings; services that may not import GantryServing (the gateway, the
/// orchestrator) compare against the same constant the adapter registers under.
public enum EngineName {
    /// llama.cpp's `llama-server`: the default engine, and the one whose tokenizer endpoints the
    /// gateway calls and whose usage counts one sequence only.
    public static let llamaCpp = "llama-cpp"
}
