public import HTTPTypes
public import Hummingbird
import Synchronization

/// Which methods each registered path takes, filled once the router has all its routes, so an
/// error middleware registered before them can tell "no such path" (404) from "not with this
/// method" (405). Matching follows the router's path syntax as Gantry uses it: a literal segment,
/// a `{capture}` or `*` (any one segment), and `**` (the rest of the path).
public final class RouteMethods: Sendable {
    private struct Template {
        let segments: [Substring]
        let method: HTTPRequest.Method
    }

    private let templates = Mutex<[Template]>([])

    public init() {}

    /// Takes the router's routes (call after the last route is added).
    public func load<Context>(_ router: Router<Context>) {
        let loaded = router.routes.map {
            Template(segments: $0.path.description.split(separator: "/"), method: $0.method)
        }
        templates.withLock { $0 = loaded }
    }

    /// The methods registered for `path`, in a stable order; empty when no route has that path.
    public func allowed(path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        let methods = templates.withLock { templates in
            templates.filter { Self.matches($0.segments, segments) }.map(\.method)
        }
        var seen: Set<String> = []
        return methods.filter { seen.insert($0.rawValue).inserted }.sorted { $0.rawValue < $1.rawValue }
    }

    private static func matches(_ template: [Substring], _ path: [Substring]) -> Bool {
        var index = 0
        for segment in template {
            if segment == "**" { return index < path.count }
            guard index < path.count else { return false }
            let isCapture = segment == "*" || (segment.hasPrefix("{") && segment.hasSuffix("}"))
            guard isCapture || segment == path[index] else { return false }
            index += 1
        }
        return index == path.count
    }
}
