import Foundation

/// Kubernetes resource quantities: `"8"`, `"500m"`, `"16Gi"`, `"1000000Ki"`, `"1.5"`, `"1e3"`.
public enum Quantity {
    /// The value in base units (cores, bytes, devices), or nil when the text is not a quantity.
    public static func value(_ text: String) -> Double? {
        let suffixes: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776),
            ("Pi", 1_125_899_906_842_624), ("Ei", 1_152_921_504_606_846_976),
            ("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15),
            ("E", 1e18),
        ]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        // A plain or exponent form (`8`, `1.5`, `1e3`) is a number as it stands.
        if let number = Double(trimmed) { return number.isFinite && number >= 0 ? number : nil }
        for (suffix, multiplier) in suffixes where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count)), number.isFinite, number >= 0 else { return nil }
            return number * multiplier
        }
        return nil
    }

    /// Whole units, rounded down (CPU cores offered, GPUs): nil when not a quantity.
    public static func whole(_ text: String?) -> Int? {
        guard let text, let value = value(text), value < Double(Int.max) else { return nil }
        return Int(value.rounded(.down))
    }
}
