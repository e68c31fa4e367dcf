/// The credential of an `Authorization: Bearer <credential>` header (scheme case-insensitive,
/// spaces and tabs around the credential removed), or nil for any other header. One reading for
/// the authentication middleware and the data plane's direct relay, so both accept the same
/// headers. Trimmed by hand: Foundation's `trimmingCharacters` was 2 % of a relayed request.
public enum BearerCredential {
    public static func credential(fromAuthorization header: String) -> String? {
        guard header.utf8.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let rest = header.utf8.dropFirst(7)
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = rest.firstIndex(where: { !isBlank($0) }), let last = rest.lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return String(Substring(rest[first...last]))
    }
}
