import Foundation
import GantryCore
import GantryServing
import GantryTestSupport
import Testing

/// Where the engine build's `cmake` comes from on a machine without one: PyPI's wheel, installed
/// under the cache once (real pip, real PyPI, the real binary run).
@Suite("cmake for the engine build")
struct CMakeToolTests {
    @Test(
        "without cmake on PATH, PyPI's cmake is installed under the cache, says so, runs, and is reused",
        .tags(.python))
    func installsAndReuses() async throws {
        let cache = try TemporaryDirectory()
        let lines = LineRecorder()
        let tool = CMakeTool(cacheDirectory: cache.path, usesPath: false)
        let first = try await tool.resolve { lines.append($0) }
        #expect(first == tool.privateBinary)
        #expect(lines.all.first?.contains("cmake not found: installing cmake \(CMakeTool.version) from PyPI") == true)
        let version = try await ExternalCommand.run([first, "--version"])
        #expect(version.contains("cmake version \(CMakeTool.version)"))

        // Again: the installed one, and pip is not run (its staging directory would show).
        let before = lines.all.count
        #expect(try await tool.resolve { lines.append($0) } == first)
        #expect(lines.all.dropFirst(before) == ["using cmake \(CMakeTool.version) from \(tool.directory)"])
        let tools = try FileManager.default.contentsOfDirectory(atPath: cache.path + "/tools")
        #expect(tools == ["cmake-\(CMakeTool.version)"], "no half-installed leftovers: \(tools)")
    }
}
