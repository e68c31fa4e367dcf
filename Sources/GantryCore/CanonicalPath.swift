/// The one spelling of a request target's path that every check and the router see.
///
/// Hummingbird's router skips empty segments, so `//api/v1/keys` and `/api/v1/keys/` reached the
/// route `/api/v1/keys` while the checks made on the raw path (which prefixes need a credential,
/// the CSRF check for cookie sessions, which paths a gateway proxies to the control) saw another
/// path and let the request through unchecked. Empty segments are dropped, so those spellings
/// become the path the router would have matched anyway. What no client of this API sends and a
/// check could read differently from a router, a proxy or a file system is refused: a target that
/// is not an origin-form path (an absolute URL), `.` and `..` segments, a backslash, and the
/// percent-encoded forms of `/`, `\` and `.`.
public enum CanonicalPath: Equatable, Sendable {
    /// Already canonical: use the request as it is.
    case canonical
    /// Use this target instead (the canonical path, then the query unchanged).
    case rewritten(String)
    case refused

    public static func of(_ target: String) -> CanonicalPath {
        let queryStart = target.firstIndex(of: "?") ?? target.endIndex
        let path = target[..<queryStart]
        guard path.first == "/" else { return .refused }
        var segments: [Substring] = []
        var changed = false
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty {
                changed = true
                continue
            }
            if segment == "." || segment == ".." || segment.contains("\\") || hasEncodedSeparator(segment) {
                return .refused
            }
            segments.append(segment)
        }
        // "/" alone splits into one empty segment: that is the canonical root, not a change.
        if segments.isEmpty { return path == "/" ? .canonical : .rewritten("/" + target[queryStart...]) }
        guard changed else { return .canonical }
        return .rewritten("/" + segments.joined(separator: "/") + target[queryStart...])
    }

    /// `%2F`, `%5C` or `%2E` in any case.
    private static func hasEncodedSeparator(_ segment: Substring) -> Bool {
        let bytes = Array(segment.utf8)
        guard bytes.count >= 3 else { return false }
        for index in 0..<(bytes.count - 2) where bytes[index] == UInt8(ascii: "%") {
            let high = bytes[index + 1]
            let low = bytes[index + 2] | 0x20  // lower case
            if (high == UInt8(ascii: "2") && (low == UInt8(ascii: "f") || low == UInt8(ascii: "e")))
                || (high == UInt8(ascii: "5") && low == UInt8(ascii: "c"))
            {
                return true
            }
        }
        return false
    }
}
