import Foundation
import GantryCore

/// A posted `application/x-www-form-urlencoded` form: each field's values in order, so that
/// repeated fields (checkboxes) keep all of theirs.
struct ConsoleForm: Sendable {
    private(set) var fields: [(name: String, value: String)] = []

    init(_ body: String) {
        for pair in body.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            // `+` is a space in this encoding; percent-decoding alone leaves it.
            func decode(_ text: Substring) -> String {
                text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            fields.append((decode(parts[0]), parts.count > 1 ? decode(parts[1]) : ""))
        }
    }

    /// The field's first value, trimmed; nil when absent or empty.
    subscript(name: String) -> String? {
        let value = fields.first { $0.name == name }?.value.trimmingCharacters(in: .whitespacesAndNewlines)
        return value?.isEmpty == false ? value : nil
    }

    func all(_ name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// A whole number field for the API. What is not a number is passed on as text, so that the
    /// API refuses it with its own message next to the field rather than the console guessing.
    func number(_ name: String) -> JSONValue? {
        guard let text = self[name] else { return nil }
        if let value = Int(text) { return .number(Double(value)) }
        return .string(text)
    }
}
