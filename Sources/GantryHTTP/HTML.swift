public import Foundation

/// Escaping for text placed in HTML, so that names and ids from users can never become markup.
public enum HTML {
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    public static func date(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day())
    }
}
