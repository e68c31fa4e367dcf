import NIOCore
import Testing

@testable import GantryGateway

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

    @Test("split anywhere, a stream relays to the same bytes, less the usage event, with its usage found")
    func anySplit() {
        let events = [
            #"data: {"id":"a","choices":[{"delta":{"content":"say \"usage\":{} here"}}]}"# + "\n\n",
            #"data: {"id":"b","choices":[{"delta":{"content":"x"}}]}"# + "\r\n\r\n",
            #"data: {"id":"c","choices":[{"delta":{"content":"\n"}}]}"# + "\n\n",
        ]
        let stream = events.joined() + Self.usageEvent + "\n\n" + "data: [DONE]\n\n"
        let expected = events.joined() + "data: [DONE]\n\n"
        let bytes = Array(stream.utf8)
        for cut in 0...bytes.count {
            var meter = StreamMeter(stripUsage: true)
            var out = String(buffer: meter.relay(ByteBuffer(bytes: bytes[..<cut])))
            out += String(buffer: meter.relay(ByteBuffer(bytes: bytes[cut...])))
            out += String(buffer: meter.finish())
            #expect(out == expected, "cut at \(cut)")
            #expect(meter.usage == TokenUsage(promptTokens: 4, completionTokens: 2), "cut at \(cut)")
        }
    }

    @Test("the last event end is found from the back, for LF and CRLF endings")
    func lastEventEnd() {
        func end(_ text: String) -> Int? { Array(text.utf8).withUnsafeBytes { StreamMeter.lastEventEnd(in: $0) } }
        #expect(end("data: a\n\ndata: b\r\n\r\ndata: c") == 20)
        #expect(end("data: a\n\n") == 9)
        #expect(end("\n\n") == 2)
        #expect(end("data: a\r\n\r") == nil)
        #expect(end("data: a\n") == nil)
        #expect(end("") == nil)
    }

    @Test("the byte search finds the first occurrence whichever byte it anchors on")
    func firstOccurrence() {
        func find(_ needle: String, _ text: String) -> Int? {
            Array(text.utf8).withUnsafeBytes { ByteSearch.find(Array(needle.utf8), in: $0) }
        }
        #expect(find(#""usage":{"#, #"{"a":"usage":{","usage":{}"#) == 5)
        #expect(find(#""usage":{"#, #""usage":{"#) == 0)
        #expect(find(#""usage":{"#, #"x"usage":"#) == nil)
        #expect(find("gg", "agggg") == 1)
        #expect(find("abc", "ab") == nil)
        #expect(find("q", "") == nil)
        #expect(ByteSearch.anchorIndex(of: Array(#""usage":{"#.utf8)) == 4, "g is the least common byte")
    }

    @Test("an event with choices and usage stays; the usage-only one goes; the last usage counts")
    func mixedUsageEvents() {
        var meter = StreamMeter(stripUsage: true)
        let kept = #"data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"# + "\n\n"
        let out = meter.relay(ByteBuffer(string: "data: {\"choices\":[]}\n\n" + kept + Self.usageEvent + "\n\ndata: [DONE]\n\n"))
        #expect(String(buffer: out) == "data: {\"choices\":[]}\n\n" + kept + "data: [DONE]\n\n")
        #expect(meter.usage == TokenUsage(promptTokens: 4, completionTokens: 2))
    }
}
