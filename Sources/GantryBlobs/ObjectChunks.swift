public import NIOCore

extension ObjectStore {
    /// Runs `body` with the object's bytes as an async sequence of chunks.
    ///
    /// The store's push-style `read` runs in a child task and hands over one chunk at a time: it
    /// reads the next chunk only after `body` took the previous one, so a slow consumer (a slow
    /// client, a slow disk) holds at most one chunk in memory, never the object. When `body`
    /// returns or throws early, the read is stopped.
    public func withChunks<Result: Sendable>(
        of key: String, range: Range<Int64>? = nil, _ body: (ObjectChunks) async throws -> Result
    ) async throws -> Result {
        let handoff = ChunkHandoff()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    if let range {
                        try await self.read(key, range: range) { chunk in try await handoff.send(chunk) }
                    } else {
                        try await self.read(key) { chunk in try await handoff.send(chunk) }
                    }
                    await handoff.finish(throwing: nil)
                } catch {
                    await handoff.finish(throwing: error)
                }
            }
            do {
                let result = try await body(ObjectChunks(handoff: handoff))
                await handoff.abandon()
                try await group.waitForAll()
                return result
            } catch {
                await handoff.abandon()
                group.cancelAll()
                throw error
            }
        }
    }
}

/// The chunks of one object, as handed over by `ObjectStore.withChunks`.
public struct ObjectChunks: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let handoff: ChunkHandoff

    public struct AsyncIterator: AsyncIteratorProtocol {
        let handoff: ChunkHandoff
        public mutating func next() async throws -> ByteBuffer? {
            try await handoff.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(handoff: handoff)
    }
}

/// A one-slot rendezvous between a producer and a consumer of chunks.
actor ChunkHandoff {
    /// The consumer stopped listening; the producer's `send` fails with this.
    struct Abandoned: Error {}

    private var slot: ByteBuffer?
    private var producerWaiting: CheckedContinuation<Void, any Error>?
    private var consumerWaiting: CheckedContinuation<ByteBuffer?, any Error>?
    private var ending: (any Error)??
    private var abandoned = false

    /// Gives a chunk to the consumer and returns once it was taken.
    func send(_ chunk: ByteBuffer) async throws {
        if abandoned { throw Abandoned() }
        if let consumer = consumerWaiting {
            consumerWaiting = nil
            consumer.resume(returning: chunk)
            return
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            slot = chunk
            producerWaiting = continuation
        }
    }

    /// The next chunk, nil at the end, or the producer's error.
    func next() async throws -> ByteBuffer? {
        if let chunk = slot {
            slot = nil
            producerWaiting?.resume()
            producerWaiting = nil
            return chunk
        }
        if let ending {
            if let error = ending { throw error }
            return nil
        }
        return try await withCheckedThrowingContinuation { continuation in consumerWaiting = continuation }
    }

    /// The producer is done (`error` nil) or failed.
    func finish(throwing error: (any Error)?) {
        ending = .some(error)
        if let consumer = consumerWaiting {
            consumerWaiting = nil
            if let error { consumer.resume(throwing: error) } else { consumer.resume(returning: nil) }
        }
    }

    /// The consumer is gone: release a waiting producer with an error so the read stops.
    func abandon() {
        abandoned = true
        slot = nil
        producerWaiting?.resume(throwing: Abandoned())
        producerWaiting = nil
    }
}
