import GantryCore
import Testing

@Suite("Control endpoints: a gateway's list of control replicas")
struct ControlEndpointsTests {
    struct Down: Error {}
    struct Refused: Error {}

    @Test("the list is parsed and checked; the replica that answered is tried first from then on")
    func orderAndPreference() async throws {
        let control = try ControlEndpoints(" http://a:1/ ,http://b:2,, https://c:3")
        #expect(control.urls == ["http://a:1", "http://b:2", "https://c:3"])
        #expect(control.ordered == ["http://a:1", "http://b:2", "https://c:3"])
        var tried: [String] = []
        let answer = try await control.first { url in
            tried.append(url)
            guard url == "http://b:2" else { throw Down() }
            return url
        }
        #expect(answer == "http://b:2")
        #expect(tried == ["http://a:1", "http://b:2"])
        #expect(control.ordered == ["http://b:2", "https://c:3", "http://a:1"], "b first, then the others in turn")
        for bad in ["", " , ", "ftp://x", "http://ok,nope"] {
            #expect(throws: GantryError.self, "\(bad)") { try ControlEndpoints(bad) }
        }
    }

    @Test("an error the caller may not retry elsewhere stops at once; when every replica fails, the last error comes back")
    func failures() async throws {
        let control = try ControlEndpoints("http://a:1,http://b:2")
        var tried: [String] = []
        await #expect(throws: Refused.self) {
            try await control.first(tryNext: { $0 is Down }) { url -> Int in
                tried.append(url)
                throw Refused()
            }
        }
        #expect(tried == ["http://a:1"], "not sent to a second replica")
        await #expect(throws: Down.self) {
            try await control.first { _ -> Int in throw Down() }
        }
        #expect(control.ordered.first == "http://a:1", "nothing answered: the preference stays")
    }
}
