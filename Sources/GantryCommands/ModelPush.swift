import ArgumentParser
import AsyncHTTPClient
import Foundation
import GantryCore
import NIOCore
import NIOFileSystem

extension ModelsCommand {
    /// `gantry models push NAME PATH`: uploads a file or a directory as a new version (or into an
    /// unfinished one with `--version`), then completes it.
    ///
    /// Resuming is per file: files the version already holds with the same size and SHA-256 are
    /// skipped, so re-running the same command after an interruption uploads only what is
    /// missing. Each file is retried on network errors and 5xx answers; a 4xx stops at once.
    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a model file or directory as a version, with progress; re-run to resume.")

        @Argument(help: "Model name; registered if missing.") var name: String
        @Argument(help: "A file, or a directory whose files (recursively) make up the version.") var path: String
        @Option(help: "Version to create, or an unfinished version to resume (default: the next integer).")
        var version: String?
        @Option(help: "File format (default: gguf, safetensors or onnx, from the file names).") var format: String?
        @Option(help: "Token context limit of the version (required for a new version).") var contextLimit: Int?
        @Option(help: "Task of a newly registered model: chat, completion or embedding.") var task: String = "chat"
        @Option(help: "Description of the version.") var description: String?
        @Option(help: "Attempts per file before giving up.") var attempts: Int = 3
        @Flag(help: "Leave the version open (uploading) instead of completing it.") var noComplete = false

        func run() async throws {
            let client = try APIClient.configured()
            let files = try PushFile.collect(at: path)
            guard !files.isEmpty else { throw ValidationError("\(path) holds no files") }

            if try await client.call("GET", APIClient.modelPath(name)).status == 404 {
                _ = try await client.expect("POST", "/api/v1/models", json: APIClient.json(["name": name, "task": task]))
                print("registered model \(name)")
            }
            var uploaded: [String: (size: Int64, sha256: String)] = [:]
            let versionName: String
            var found: (status: Int, body: Data)?
            if let version { found = try await client.call("GET", APIClient.modelPath(name, "versions", version)) }
            if let version, let found, found.status == 200 {
                let existing = (try? JSONSerialization.jsonObject(with: found.body)) as? [String: Any] ?? [:]
                if existing["status"] as? String == "ready" { throw ValidationError("\(name)@\(version) is already ready") }
                for file in existing["files"] as? [[String: Any]] ?? [] {
                    guard let path = file["path"] as? String, let size = file["size"] as? Int, let sha = file["sha256"] as? String
                    else { continue }
                    uploaded[path] = (Int64(size), sha)
                }
                versionName = version
            } else {
                guard let contextLimit else { throw ValidationError("--context-limit is required for a new version") }
                var body: [String: Any] = [
                    "format": try format ?? PushFile.inferFormat(files), "context_limit": contextLimit,
                ]
                if let version { body["version"] = version }
                if let description { body["description"] = description }
                let created = try await client.expect(
                    "POST", APIClient.modelPath(name, "versions"), json: APIClient.json(body))
                versionName = created["version"] as? String ?? "?"
            }
            printProgress("pushing \(files.count) file(s) to \(name)@\(versionName) (to resume: --version \(versionName))")

            for file in files {
                let digest = try DemoModel.digest(of: file.absolutePath)
                if let done = uploaded[file.relativePath], done.size == file.size, done.sha256 == digest {
                    printProgress("\(file.relativePath): already uploaded, skipped")
                    continue
                }
                try await upload(file, digest: digest, version: versionName, client: client)
            }
            if noComplete {
                print(
                    "\(name)@\(versionName) uploaded; complete it with POST \(APIClient.modelPath(name, "versions", versionName, "complete"))"
                )
                return
            }
            _ = try await client.expect("POST", APIClient.modelPath(name, "versions", versionName, "complete"))
            print("\(name)@\(versionName) is ready")
        }

        private func upload(_ file: PushFile, digest: String, version: String, client: APIClient) async throws {
            let segments = [name, "versions", version, "files"] + file.relativePath.split(separator: "/").map(String.init)
            let url = client.server + "/api/v1/models/" + segments.map(APIClient.encodeSegment).joined(separator: "/")
            for attempt in 1...max(1, attempts) {
                let progress = PushProgress(label: file.relativePath, total: file.size)
                do {
                    let (status, body) = try await file.put(
                        to: url, apiKey: client.apiKey, digest: digest, progress: progress)
                    await progress.finish()
                    if (200..<300).contains(status) { return }
                    let detail =
                        ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["detail"] as? String
                        ?? "HTTP \(status)"
                    guard status >= 500, attempt < attempts else {
                        throw GantryError(.invalidRequest, "\(file.relativePath): \(detail)")
                    }
                    printProgress("\(file.relativePath): \(detail); retrying")
                } catch let error as GantryError {
                    throw error
                } catch {
                    await progress.finish()
                    guard attempt < attempts else {
                        throw GantryError(.unavailable, "\(file.relativePath): upload failed after \(attempt) attempts: \(error)")
                    }
                    printProgress("\(file.relativePath): \(error); retrying")
                }
                try await Task.sleep(for: .seconds(1 << (attempt - 1)))
            }
        }
    }
}

/// One local file of a push.
struct PushFile: Sendable {
    var relativePath: String
    var absolutePath: String
    var size: Int64

    /// The file itself, or every regular file under a directory (hidden ones skipped), sorted.
    static func collect(at path: String) throws -> [PushFile] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path) does not exist")
        }
        let root = URL(fileURLWithPath: path).standardizedFileURL
        guard isDirectory.boolValue else {
            return [PushFile(relativePath: root.lastPathComponent, absolutePath: root.path, size: try size(of: root.path))]
        }
        var files: [PushFile] = []
        let enumerator = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles])
        while let url = enumerator?.nextObject() as? URL {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            files.append(PushFile(relativePath: relative, absolutePath: url.path, size: try size(of: url.path)))
        }
        return files.sorted { $0.relativePath < $1.relativePath }
    }

    static func size(of path: String) throws -> Int64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
    }

    static func inferFormat(_ files: [PushFile]) throws -> String {
        for (suffix, format) in [(".gguf", "gguf"), (".safetensors", "safetensors"), (".onnx", "onnx")]
        where files.contains(where: { $0.relativePath.hasSuffix(suffix) }) {
            return format
        }
        throw ValidationError("cannot tell the format from the file names; pass --format")
    }

    /// Streams the file as the body of a PUT; the server checks the digest before keeping it.
    func put(to url: String, apiKey: String?, digest: String, progress: PushProgress) async throws -> (Int, Data) {
        try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(absolutePath)) { handle in
            var request = HTTPClientRequest(url: url)
            request.method = .PUT
            if let apiKey { request.headers.add(name: "authorization", value: "Bearer \(apiKey)") }
            request.headers.add(name: "content-type", value: "application/octet-stream")
            request.headers.add(name: "x-gantry-sha256", value: digest)
            let chunks = handle.readChunks(chunkLength: .mebibytes(1)).map { @Sendable chunk in
                await progress.advance(by: chunk.readableBytes)
                return chunk
            }
            request.body = .stream(chunks, length: .known(size))
            let response = try await HTTPClient.shared.execute(request, timeout: .hours(24))
            return (Int(response.status.code), Data(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
    }
}

/// A progress line on stderr: bytes sent, percentage and rate, redrawn at most every half second.
actor PushProgress {
    let label: String
    let total: Int64
    private var sent: Int64 = 0
    private let started = ContinuousClock.now
    private var lastDrawn = ContinuousClock.now - .seconds(1)

    init(label: String, total: Int64) {
        self.label = label
        self.total = total
    }

    func advance(by bytes: Int) {
        sent += Int64(bytes)
        if ContinuousClock.now - lastDrawn >= .milliseconds(500) { draw(final: false) }
    }

    func finish() {
        draw(final: true)
    }

    private func draw(final: Bool) {
        lastDrawn = ContinuousClock.now
        let fraction = total > 0 ? Double(sent) / Double(total) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let elapsed = Double((ContinuousClock.now - started).components.seconds) + 0.001
        let rate = Double(sent) / elapsed / 1_048_576
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let figures = String(
            format: "%3.0f%% %.1f/%.1f MiB %.1f MiB/s", fraction * 100, Double(sent) / 1_048_576, Double(total) / 1_048_576,
            rate)
        let line = "\r\(label) [\(bar)] \(figures)"
        FileHandle.standardError.write(Data((line + (final ? "\n" : "")).utf8))
    }
}
