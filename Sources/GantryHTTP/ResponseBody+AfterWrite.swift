public import Hummingbird

extension ResponseBody {
    /// The same body, followed by `action` once it has been written (or failed to be): the point at
    /// which a streamed response is really over, for logs and latency metrics.
    public func afterWrite(_ action: @escaping @Sendable () async -> Void) -> ResponseBody {
        let body = self
        return ResponseBody(contentLength: contentLength) { writer in
            do {
                try await body.write(writer)
            } catch {
                await action()
                throw error
            }
            await action()
        }
    }
}
