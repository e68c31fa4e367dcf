/// The one spelling of a request target's path that every check and the router see.
///
/// Hummingbird's router skips empty segments, so `//api/v1/keys` and `/api/v1/keys/` reached the
/// route `/api/v1/keys` while the checks made on the raw path (which prefixes need a credential,
/// the CSRF check for cookie sessions, which paths a gateway proxies to the control) saw another
/// path and let the request through unchecked. A path is canonical when it starts with `/` and
/// has no empty segment (no `//`, no trailing `/` but the root's), no `.` or `..` segment, no
/// backslash and no percent-encoded `/`, `\` or `.`. Anything else is refused, not rewritten:
/// no client of this API needs those spellings, and a rewrite would change what a wildcard route
/// (an uploaded file's path) means. The query is not part of the path and is not looked at.
public enum CanonicalPath {
    public static func accepts(_ target: String) -> Bool {
        let path = target[..<(target.firstIndex(of: "?") ?? target.endIndex)]
        guard path.first == "/" else { return false }
        if path == "/" { return true }
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            guard !segment.isEmpty, segment != ".", segment != "..", !segment.contains("\\"), !hasEncodedSeparator(segment)
            else { return false }
        }
        return true
    }

    /// `%2F`, `%5C` or `%2E` in any case (read in place: this runs on every routed request).
    private static func hasEncodedSeparator(_ segment: Substring) -> Bool {
        var previous: (UInt8, UInt8) = (0, 0)
        for byte in segment.utf8 {
            let low = byte | 0x20  // lower case
            if previous.0 == UInt8(ascii: "%"),
                (previous.1 == UInt8(ascii: "2") && (low == UInt8(ascii: "f") || low == UInt8(ascii: "e")))
                    || (previous.1 == UInt8(ascii: "5") && low == UInt8(ascii: "c"))
            {
                return true
            }
            previous = (previous.1, byte)
        }
        return false
    }
}
