import GantryHTTP
import HTTPTypes
import Hummingbird
import NIOCore

/// The console's stylesheet and script, compiled into the binary (no npm, nothing copied in).
enum ConsoleAssets {
    static func add(to router: Router<GantryRequestContext>) {
        let files: [(name: String, type: String, bytes: [UInt8])] = [
            ("console.css", "text/css; charset=utf-8", PackageResources.console_css),
            ("console.js", "text/javascript; charset=utf-8", PackageResources.console_js),
        ]
        for file in files {
            let buffer = ByteBuffer(bytes: file.bytes)
            router.get("/console/assets/\(file.name)") { _, _ in
                Response(
                    status: .ok,
                    headers: [
                        .contentType: file.type, .cacheControl: "public, max-age=300",
                        HTTPField.Name("x-content-type-options")!: "nosniff",
                    ],
                    body: .init(byteBuffer: buffer))
            }
        }
    }
}
