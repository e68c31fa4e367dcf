import HTTPTypes
import NIOCore

/// The client's side of a direct exchange: the connection its request came on and its answer
/// goes out on. `DirectRelayFront` reads and writes HTTP/1.1 bytes itself, ahead of Hummingbird's
/// codec; `DirectRelayHandler` works in HTTP parts behind it, once a connection has been handed
/// to the codec.
protocol DirectClient: AnyObject {
    var relay: DirectRelay { get }
    var pool: EnginePool { get }
    /// The client has closed the connection.
    var clientGone: Bool { get }
    var clientAddress: String { get }
    var clientWritable: Bool { get }

    /// Buffers the answer's head (sent with the next flush). No `Content-Length` means the body
    /// is streamed (chunked).
    func writeHead(_ response: HTTPResponse)
    func writeBody(_ chunk: ByteBuffer)
    /// Ends the answer and sends what is buffered.
    func writeEnd()
    func flush()

    /// The exchange gave up before any side effect: the router serves the request instead, as
    /// the client kept it.
    func handToRouter()
    /// The exchange wrote its whole answer (or the client left); the client closes the
    /// connection if its request asked for that.
    func exchangeFinished()
}
