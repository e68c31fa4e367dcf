import AsyncHTTPClient
import NIOCore
import NIOPosix

/// How a call to the control role failed, for `ControlEndpoints.first`.
enum ControlConnection {
    /// The request never reached a control replica (no connection was made), so it is safe to
    /// send to another even when it changes something.
    static func notConnected(_ error: any Error) -> Bool {
        switch error {
        case is NIOConnectionError: return true
        case let error as HTTPClientError: return error == .connectTimeout
        case let error as ChannelError:
            if case .connectTimeout = error { return true }
            return false
        case let error as IOError: return [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode)
        default: return false
        }
    }

    /// A standby control replica refused what only the leader serves (its `503 not_leader`): the
    /// request did nothing there, so it goes to the next replica.
    struct Standby: Error {}

    /// Not connected, or refused by a standby: safe to send to the next replica.
    static func notServed(_ error: any Error) -> Bool {
        error is Standby || notConnected(error)
    }
}
