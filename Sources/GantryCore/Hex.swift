/// Lower-case hex for digests and signatures, from a table rather than a `String(format:)` call
/// per byte. One for every module: stored key hashes, S3 signatures, model file digests, the
/// gateways' client-address proofs.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
