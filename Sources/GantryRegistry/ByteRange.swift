/// One `Range: bytes=…` request header against an object's size (RFC 9110, section 14): what to
/// send. Several ranges, other units and malformed headers are ignored, as the RFC allows: the
/// whole object is sent.
enum ByteRange: Equatable {
    case whole
    /// Offsets `lowerBound..<upperBound`, within the object.
    case part(Range<Int64>)
    /// Nothing of the object is in the range: 416.
    case unsatisfiable

    static func parse(_ header: String?, size: Int64) -> ByteRange {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 else { return .whole }
        if parts[0].isEmpty {
            // A suffix: the last N bytes.
            guard let count = Int64(parts[1]), count >= 0 else { return .whole }
            guard count > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - count)..<size)
        }
        guard let start = Int64(parts[0]), start >= 0 else { return .whole }
        var end = size - 1
        if !parts[1].isEmpty {
            guard let last = Int64(parts[1]), last >= start else { return .whole }
            end = min(last, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .part(start..<(end + 1))
    }
}
