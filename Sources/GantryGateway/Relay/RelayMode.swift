/// How much of the `/v1` data plane runs on Gantry's own HTTP/1.1 code rather than the
/// libraries': the setting `gateway.relay`, also the operator's switch to turn the hand-written
/// pieces off. Every mode makes the same decisions (`AdmissionPipeline`) and gives the same
/// answers; they differ only in speed.
public enum RelayMode: String, Sendable, CaseIterable {
    /// Hummingbird's codec and router, and async-http-client to the engine.
    case off
    /// Hummingbird's codec reads the request; the relay (`DirectRelayHandler`) serves it on its
    /// event loop over its own engine connections (`EnginePool`, `EngineResponseDecoder`).
    case engine
    /// As `engine`, and the front (`DirectRelayFront`, `DirectRequestHead`) reads and writes the
    /// common request's bytes itself, ahead of the codec.
    case full
}
