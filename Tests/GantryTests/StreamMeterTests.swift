import NIOCore
import Testing

@testable import GantryServing

@Suite("SSE relay")
struct StreamMeterTests {
    static let usageEvent = #"data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#

    @Test("events ended with CRLF are relayed as they complete and the usage chunk is found and stripped")
    func crlfEvents() {
        var meter = StreamMeter(stripUsage: true)
        let first = meter.relay(ByteBuffer(string: "data: {\"choices\":[{\"delta\":{}}]}\r\n\r\ndata: {\"cho"))
        #expect(String(buffer: first) == "data: {\"choices\":[{\"delta\":{}}]}\r\n\r\n", "a whole event goes at once")
        let second = meter.relay(ByteBuffer(string: "ices\":[]}\r\n\r\n" + Self.usageEvent + "\r\n\r\ndata: [DONE]\r\n\r\n"))
        #expect(String(buffer: second) == "data: {\"choices\":[]}\r\n\r\ndata: [DONE]\r\n\r\n")
        #expect(meter.usage == TokenUsage(promptTokens: 4, completionTokens: 2))
    }

    @Test("bytes that never end an event are passed on once past the hold limit")
    func boundedHold() {
        var meter = StreamMeter(stripUsage: false)
        #expect(meter.relay(ByteBuffer(string: "data: x")).readableBytes == 0, "a partial event waits")
        let flood = meter.relay(ByteBuffer(string: String(repeating: "y", count: StreamMeter.maxHeld)))
        #expect(flood.readableBytes == StreamMeter.maxHeld + 7, "held bytes and the new ones go on together")
        #expect(meter.finish().readableBytes == 0)
    }
}
