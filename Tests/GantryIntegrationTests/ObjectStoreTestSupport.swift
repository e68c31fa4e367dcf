import Crypto
import Foundation
import GantryBlobs
import GantryCore
import NIOCore
import Synchronization

/// A request body for object-store tests: `bytes` in chunks of `chunkSize`, optionally failing
/// (like a client that went away) once `failAfter` bytes were delivered.
struct TestBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    struct Failed: Error {}

    var bytes: [UInt8]
    var chunkSize = 100_003
    var failAfter: Int?
    /// Once this many bytes were delivered, calls `stalled` and waits until cancelled (a client
    /// that stops sending).
    var stallAfter: Int?
    var stalled: (@Sendable () -> Void)?

    struct AsyncIterator: AsyncIteratorProtocol {
        let body: TestBody
        var offset = 0

        mutating func next() async throws -> ByteBuffer? {
            if let failAfter = body.failAfter, offset >= failAfter { throw Failed() }
            if let stallAfter = body.stallAfter, offset >= stallAfter {
                body.stalled?()
                try await Task.sleep(for: .seconds(3600))
            }
            guard offset < body.bytes.count else { return nil }
            var end = Swift.min(offset + body.chunkSize, body.bytes.count)
            if let failAfter = body.failAfter { end = Swift.min(end, failAfter) }
            if let stallAfter = body.stallAfter { end = Swift.min(end, stallAfter) }
            defer { offset = end }
            return ByteBuffer(bytes: body.bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: self) }
}

enum TestBytes {
    /// `count` pseudo-random bytes from `seed` (xorshift: fast, and different per seed).
    static func random(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed | 1
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            var index = 0
            while index < count {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                var word = state
                for _ in 0..<min(8, count - index) {
                    raw[index] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    index += 1
                }
            }
        }
        return bytes
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

/// Everything a read delivered, and the largest chunk it came in.
struct ReadResult {
    var bytes: [UInt8]
    var largestChunk: Int
    var chunks: Int
}

extension ObjectStore {
    func readRange(_ key: String, _ range: Range<Int64>) async throws -> [UInt8] {
        let collected = Mutex<[UInt8]>([])
        try await read(key, range: range) { chunk in collected.withLock { $0 += chunk.readableBytesView } }
        return collected.withLock { $0 }
    }

    func readAll(_ key: String) async throws -> ReadResult {
        let collected = Mutex(ReadResult(bytes: [], largestChunk: 0, chunks: 0))
        try await read(key) { chunk in
            collected.withLock {
                $0.bytes += chunk.readableBytesView
                $0.largestChunk = max($0.largestChunk, chunk.readableBytes)
                $0.chunks += 1
            }
        }
        return collected.withLock { $0 }
    }

    @discardableResult
    func put(_ key: String, _ bytes: [UInt8], limit: Int64? = nil) async throws -> ObjectSummary {
        try await put(key, body: TestBody(bytes: bytes), limit: limit) { _ in }
    }
}
