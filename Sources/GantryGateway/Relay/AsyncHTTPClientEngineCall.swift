import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// EXPERIMENT (issue 19, item 3): the direct relay's engine request made with async-http-client's
/// delegate API on the exchange's own event loop (`EventLoopPreference.delegateAndChannel(on:)`),
/// in place of `EnginePool` and `EngineResponseDecoder`, for an A/B in bench/gateway.sh. Chosen
/// with `GANTRY_EXPERIMENT_RELAY_ENGINE_CLIENT=async-http-client`.
///
/// Every callback runs on that event loop, so the delegate calls the exchange directly. A body
/// part returns a future that completes when the client can take more: async-http-client reads
/// no further until then (its backpressure).
final class AsyncHTTPClientEngineCall: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void

    private var exchange: DirectExchange?
    private var task: HTTPClient.Task<Void>?
    private var paused: EventLoopPromise<Void>?
    let eventLoop: any EventLoop

    init(exchange: DirectExchange, eventLoop: any EventLoop) {
        self.exchange = exchange
        self.eventLoop = eventLoop
    }

    /// `sameChannelLoop`: `.delegateAndChannel(on:)` (the engine connection on the exchange's loop
    /// too); otherwise `.delegate(on:)` (callbacks on it, the connection on any loop).
    func start(client: HTTPClient, url: String, requestID: String, body: ByteBuffer, sameChannelLoop: Bool) {
        guard var request = try? HTTPClient.Request(url: url, method: .POST) else {
            return didFail(reason: "bad engine address")
        }
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "x-request-id", value: requestID)
        request.body = .byteBuffer(body)
        task = client.execute(
            request: request, delegate: self,
            eventLoop: sameChannelLoop ? .delegateAndChannel(on: eventLoop) : .delegate(on: eventLoop))
    }

    /// Stops the request (the exchange ended early: the client left, a deadline passed).
    func cancel() {
        exchange = nil
        paused?.succeed()
        paused = nil
        task?.cancel()
    }

    func pauseReading() {
        if paused == nil { paused = eventLoop.makePromise() }
    }

    func resumeReading() {
        paused?.succeed()
        paused = nil
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        exchange?.engineHead(
            EngineResponseHead(
                status: Int(head.status.code), contentType: head.headers.first(name: "content-type"), keepAlive: true))
        return eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        exchange?.engineBody(buffer)
        // No read-complete event here: each part is flushed as it comes.
        exchange?.engineReadComplete()
        return paused?.futureResult ?? eventLoop.makeSucceededVoidFuture()
    }

    /// A connection that could not be opened fails the request like any other engine failure:
    /// unlike the pool, the experiment does not retry on another instance.
    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        didFail(reason: "\(error)")
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        let exchange = exchange
        self.exchange = nil
        exchange?.engineEnd()
    }

    private func didFail(reason: String) {
        guard let exchange else { return }
        self.exchange = nil
        exchange.engineFailed(timedOut: false, reason: reason)
    }
}
