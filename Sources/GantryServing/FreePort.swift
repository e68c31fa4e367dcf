import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range when there is room.
///
/// The port is released before the engine (or a test's server) binds it, so another process could
/// take it in between; a launch that fails to bind is reported and retried by the reconcile loop.
/// Ports the kernel hands out for port 0 come from the ephemeral range, the same range every
/// outgoing connection's local port comes from: under many connections one of them took a port
/// found this way before the server bound it (seen in CI: a test server never listened). A port
/// below that range is never taken by an outgoing connection.
public enum FreePort {
    public static func find() throws -> Int {
        let first = ephemeralStart
        if first > 12_000 {
            for _ in 0..<200 {
                let port = Int.random(in: 10_000..<first)
                if canBind(port) { return port }
            }
        }
        return try kernelChosen()
    }

    /// The first port of the kernel's ephemeral range, read once.
    static let ephemeralStart = ephemeralRangeStart()

    /// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
    static func ephemeralRangeStart() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap({ Int($0) })
        else { return 32_768 }
        return first
    }

    private static func canBind(_ port: Int) -> Bool {
        guard let fd = boundSocket(port: port) else { return false }
        close(fd)
        return true
    }

    private static func kernelChosen() throws -> Int {
        guard let fd = boundSocket(port: 0) else { throw FreePortError() }
        defer { close(fd) }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw FreePortError() }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A TCP socket bound to 127.0.0.1:`port` (0: one the kernel picks), or nil when it cannot be.
    private static func boundSocket(port: Int) -> Int32? {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    struct FreePortError: Error, CustomStringConvertible {
        var description: String { "could not find a free TCP port on 127.0.0.1" }
    }
}
