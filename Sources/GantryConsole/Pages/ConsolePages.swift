import Foundation
import GantryCore
import GantryHTTP
import Hummingbird

/// The console's pages, one extension per area (`ConsolePages+Models.swift`, ...). Each reads
/// what it shows from the API as the visitor and renders it; each form handler makes one API call
/// and, when the API refuses, renders the form again with the API's message by the field it names.
struct ConsolePages: Sendable {
    /// Percent-encodes one path segment (names are validated by the API, but never trusted here),
    /// or with `keepingSlashes` a whole path as a query value.
    static func segment(_ text: String, keepingSlashes: Bool = false) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: keepingSlashes ? "-._~/" : "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    static func formatNumber(_ value: Double) -> String {
        if value >= 1_000_000 { return String(format: "%.1fM", value / 1_000_000) }
        if value >= 10_000 { return String(format: "%.0fk", value / 1000) }
        if value >= 100 || value == value.rounded() { return String(Int(value.rounded())) }
        return String(format: "%.2f", value)
    }

    static func formatSeconds(_ value: Double) -> String {
        value < 1 ? String(format: "%.0f ms", value * 1000) : String(format: "%.2f s", value)
    }

    static func formatPercent(_ value: Double) -> String { String(format: "%.0f %%", value * 100) }
}
