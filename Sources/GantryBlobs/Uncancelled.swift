/// Runs clean-up work that must happen even when the current task was cancelled (a client that
/// went away): in a task of its own, which does not inherit the cancellation. Both NIOFileSystem
/// and AsyncHTTPClient give up at once in a cancelled task.
func uncancelled(_ work: @escaping @Sendable () async -> Void) async {
    await Task { await work() }.value
}
