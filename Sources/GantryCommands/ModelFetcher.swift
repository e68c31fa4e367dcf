import AsyncHTTPClient
import Crypto
import Foundation
import GantryCore
import NIOCore
import NIOFoundationCompat

/// Fetches one model version's files into a directory from Gantry's registry with a fetch token
/// (`gantry fetch-model`, which a pod's init container runs): every file is streamed to disk,
/// checked against its size and SHA-256, and only then given its name; a partial file left by an
/// interrupted run is resumed with a ranged request; files already present and correct are kept.
struct ModelFetcher {
    struct Manifest: Decodable {
        struct File: Decodable {
            var path: String
            var size: Int64
            var sha256: String
        }
        var files: [File]
    }

    let grant: ModelFetchGrant
    let directory: URL
    let http: HTTPClient
    let progress: @Sendable (String) -> Void
    /// Attempts per file: a broken connection is resumed where it stopped.
    var attempts = 5

    static let marker = ".gantry-complete"

    func fetch() async throws {
        let manifest = try await readManifest()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var total: Int64 = 0
        for file in manifest.files {
            try await fetch(file)
            total += file.size
        }
        let lines = manifest.files.map { "\($0.sha256)  \($0.size)  \($0.path)" }.joined(separator: "\n") + "\n"
        try Data(lines.utf8).write(to: directory.appendingPathComponent(Self.marker))
        progress("fetched \(manifest.files.count) files, \(total) bytes, into \(directory.path)")
    }

    func readManifest() async throws -> Manifest {
        let response = try await send(grant.url, range: nil)
        let body = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else {
            throw GantryError(
                .unavailable, "\(grant.url): HTTP \(response.status.code): \(String(buffer: body).prefix(500))")
        }
        return try JSONDecoder().decode(Manifest.self, from: Data(buffer: body))
    }

    func fetch(_ file: Manifest.File) async throws {
        // The registry validated the path; a fetcher writing files still refuses to leave its directory.
        let segments = file.path.split(separator: "/", omittingEmptySubsequences: false)
        guard !file.path.hasPrefix("/"), !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw GantryError.invalid("the manifest names an unsafe path '\(file.path)'")
        }
        let target = directory.appendingPathComponent(file.path)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        if try digest(of: target, upTo: nil).map({ $0.size == file.size && $0.sha256 == file.sha256 }) == true {
            progress("kept \(file.path) (already here, digest checked)")
            return
        }
        let partial = target.appendingPathExtension("partial")
        var lastError: (any Error)?
        for attempt in 1...attempts {
            do {
                try await download(file, to: partial)
                lastError = nil
                break
            } catch let error as GantryError where error.kind == .conflict {
                throw error
            } catch {
                lastError = error
                progress("\(file.path): attempt \(attempt) failed (\(error)); resuming")
                try await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
        if let lastError { throw lastError }
        _ = try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: partial, to: target)
        progress("fetched \(file.path) (\(file.size) bytes, sha256 \(file.sha256))")
    }

    /// Downloads the rest of `file` after what `partial` holds, then checks the whole.
    func download(_ file: Manifest.File, to partial: URL) async throws {
        var have = (try? FileManager.default.attributesOfItem(atPath: partial.path)[.size] as? Int64) ?? 0
        if have > file.size {
            try FileManager.default.removeItem(at: partial)
            have = 0
        }
        if !FileManager.default.fileExists(atPath: partial.path) {
            FileManager.default.createFile(atPath: partial.path, contents: nil)
        }
        if have < file.size {
            let url =
                grant.url + "/files/"
                + file.path.split(separator: "/").map {
                    String($0).addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? String($0)
                }.joined(separator: "/")
            let response = try await send(url, range: have > 0 ? have : nil)
            let handle = try FileHandle(forWritingTo: partial)
            defer { try? handle.close() }
            switch response.status {
            case .partialContent:
                try handle.seek(toOffset: UInt64(have))
            case .ok:
                // The server sent the whole file: start over.
                try handle.truncate(atOffset: 0)
            default:
                let body = try await response.body.collect(upTo: 1 << 16)
                let error = GantryError(
                    .unavailable, "\(url): HTTP \(response.status.code): \(String(buffer: body).prefix(500))")
                // A refused token or a missing file will not get better by trying again.
                if response.status.code < 500 { throw GantryError(.conflict, error.message) }
                throw error
            }
            for try await chunk in response.body {
                try handle.write(contentsOf: chunk.readableBytesView)
            }
        }
        guard let written = try digest(of: partial, upTo: nil), written.size == file.size, written.sha256 == file.sha256
        else {
            try? FileManager.default.removeItem(at: partial)
            throw GantryError(
                .conflict,
                "\(file.path): the bytes fetched do not match the registry's record (\(file.size) bytes, sha256 \(file.sha256))"
            )
        }
    }

    func send(_ url: String, range: Int64?) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: ModelFetchGrant.header, value: grant.token)
        if let range { request.headers.add(name: "range", value: "bytes=\(range)-") }
        return try await http.execute(request, timeout: .hours(24))
    }

    /// Size and SHA-256 of a file, read in chunks; nil when there is no file.
    func digest(of url: URL, upTo limit: Int64?) throws -> (size: Int64, sha256: String)? {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += Int64(chunk.count)
        }
        return (size, Hex.encode(Array(hasher.finalize())))
    }
}
