import Foundation
import GantryCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One TCP connection to a test server, written and read as bytes: for what HTTP clients do not
/// let a test do (pipelining, a head split across writes, odd but valid framing, seeing the
/// server close the connection). Reads block, so they run on threads of the tests' own
/// (``readers``): blocking the test's own thread could starve the servers' tasks on a two-core
/// machine.
final class RawHTTPConnection: @unchecked Sendable {
    struct Answer {
        var status: Int
        var fields: [String: String]
        /// The body, with chunked framing removed.
        var body: String
        /// The answer's bytes as they arrived, head and framing included.
        var raw = ""
        var id: String { fields["x-request-id"] ?? "" }
    }

    /// The threads that block in reads. Not NIO's shared blocking pool: that has one thread per
    /// core (two here), and the server under test runs its SQLite queries and file-system calls
    /// on it, so two tests waiting in a read held every thread the server needed to answer them,
    /// and both reads (and every query of every other test) waited for the 10 s read timeout.
    private static let readers: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    private let socketFD: Int32
    private var received: [UInt8] = []
    private let reading = Atomic<Bool>(false)

    /// Whether a read of this connection is under way: a test can wait until its readers hold
    /// their threads before it lets the server send anything.
    var isReading: Bool { reading.load(ordering: .sequentiallyConsistent) }

    /// `source` is the loopback address the connection comes from (any of 127.0.0.0/8), so a test
    /// can be several clients.
    init(port: Int, source: String = "127.0.0.1") throws {
        socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw GantryError(.internal, "no socket") }
        if source != "127.0.0.1" {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                close(socketFD)
                throw GantryError(.internal, "bind to \(source) failed")
            }
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var noDelay: Int32 = 1
        setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(socketFD)
            throw GantryError(.internal, "connect failed")
        }
    }

    deinit { close(socketFD) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard write(socketFD, bytes, bytes.count) == bytes.count else { throw GantryError(.internal, "short write") }
    }

    /// Sends `text` in pieces cut at `cuts` (byte offsets), pausing between them so the server
    /// reads each piece on its own.
    func send(_ text: String, cutAt cuts: [Int]) async throws {
        let bytes = Array(text.utf8)
        var start = 0
        for cut in cuts + [bytes.count] {
            let piece = Array(bytes[start..<cut])
            guard write(socketFD, piece, piece.count) == piece.count else { throw GantryError(.internal, "short write") }
            start = cut
            try await Task.sleep(for: .milliseconds(30))
        }
    }

    /// The next whole answer.
    func answer() async throws -> Answer {
        try await Self.readers.runIfActive { try self.blockingAnswer() }
    }

    /// Reads until `text` has arrived (for a stream's first events), without consuming it.
    func waitFor(_ text: String) async throws {
        try await Self.readers.runIfActive { try self.blockingWaitFor(text) }
    }

    /// Whether the server closed the connection (nothing more arrives, then the end).
    func endsWithoutMore() async throws -> Bool {
        try await Self.readers.runIfActive { try self.blockingEndsWithoutMore() }
    }

    private func blockingAnswer() throws -> Answer {
        while true {
            if let (answer, used) = Self.parse(received) {
                received.removeFirst(used)
                return answer
            }
            guard try readMore() else { throw GantryError(.internal, "the connection ended before a whole answer") }
        }
    }

    private func blockingWaitFor(_ text: String) throws {
        while !String(decoding: received, as: UTF8.self).contains(text) {
            guard try readMore() else { throw GantryError(.internal, "the connection ended before \(text)") }
        }
    }

    private func blockingEndsWithoutMore() throws -> Bool {
        guard received.isEmpty else { return false }
        return try !readMore()
    }

    /// False at the connection's end.
    private func readMore() throws -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        reading.store(true, ordering: .sequentiallyConsistent)
        let count = read(socketFD, &buffer, buffer.count)
        reading.store(false, ordering: .sequentiallyConsistent)
        // A server that closed with bytes of ours unread resets the connection: an end too (which
        // of the two a client sees depends on whether its last bytes crossed the close).
        if count < 0, errno == ECONNRESET { return false }
        if count < 0 {
            throw GantryError(
                .internal,
                "read failed or timed out; received so far: \(String(decoding: received, as: UTF8.self).debugDescription)")
        }
        received += buffer[0..<count]
        return count > 0
    }

    /// One whole answer at the start of `bytes`, and how many bytes it took.
    static func parse(_ bytes: [UInt8]) -> (Answer, Int)? {
        let crlf: [UInt8] = [13, 10]
        guard let headEnd = find([13, 10, 13, 10], in: bytes, from: 0) else { return nil }
        let headLines = String(decoding: bytes[..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(headLines[0].split(separator: " ")[1]) ?? 0
        var fields: [String: String] = [:]
        for line in headLines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var position = headEnd + 4
        var body: [UInt8] = []
        if let length = fields["content-length"].flatMap(Int.init) {
            guard bytes.count >= position + length else { return nil }
            body = Array(bytes[position..<position + length])
            position += length
        } else if fields["transfer-encoding"] == "chunked" {
            while true {
                guard let sizeEnd = find(crlf, in: bytes, from: position),
                    let size = Int(String(decoding: bytes[position..<sizeEnd], as: UTF8.self), radix: 16),
                    bytes.count >= sizeEnd + 2 + size + 2
                else { return nil }
                body += bytes[(sizeEnd + 2)..<(sizeEnd + 2 + size)]
                position = sizeEnd + 2 + size + 2
                if size == 0 { break }
            }
        }
        return (
            Answer(
                status: status, fields: fields, body: String(decoding: body, as: UTF8.self),
                raw: String(decoding: bytes[..<position], as: UTF8.self)),
            position
        )
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        var index = start
        while index + needle.count <= bytes.count {
            if Array(bytes[index..<index + needle.count]) == needle { return index }
            index += 1
        }
        return nil
    }
}
