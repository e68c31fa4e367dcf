/// What went wrong talking to the API server, worded for the operator who must fix it.
public enum KubernetesError: Error, Sendable, CustomStringConvertible {
    /// A kubeconfig or service account that cannot be used.
    case configuration(String)
    /// No answer: connection refused, TLS failure, timeout.
    case unreachable(url: String, reason: String)
    /// The server answered with an error status; its `Status` says why.
    case refused(method: String, url: String, code: Int, status: Status?)

    public var description: String {
        switch self {
        case .configuration(let message): return message
        case .unreachable(let url, let reason): return "cannot reach the Kubernetes API server at \(url): \(reason)"
        case .refused(let method, let url, let code, let status):
            var text = "\(method) \(url): \(code)"
            if let reason = status?.reason { text += " \(reason)" }
            // For 403 the server's message names the user, verb and resource ("pods is forbidden:
            // User \"x\" cannot list resource \"pods\" ..."): it is what the operator must grant.
            if let message = status?.message { text += ": \(message)" }
            return text
        }
    }

    /// The HTTP status of a refused request.
    public var code: Int? {
        if case .refused(_, _, let code, _) = self { return code }
        return nil
    }

    /// 410 Gone: a watch's resource version is older than the server keeps; list again.
    public var isGone: Bool { code == 410 }
    public var isNotFound: Bool { code == 404 }
    public var isConflict: Bool { code == 409 }
}
