public import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A child process started with `posix_spawn`, with a clean signal state.
///
/// Foundation's `Process` spawns from whichever thread calls it, and the child inherits that
/// thread's signal mask: from Swift's worker threads that mask blocks SIGCHLD, SIGTERM and
/// SIGINT. cmake then waits forever for its own children, and an engine ignores the SIGTERM meant
/// to stop it gracefully. Here the mask is emptied and common signals reset to their defaults.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// Whether signals go to the whole process group the child leads.
    public let leadsGroup: Bool
    private let status = Mutex<Int32?>(nil)

    private init(pid: pid_t, leadsGroup: Bool) {
        self.pid = pid
        self.leadsGroup = leadsGroup
    }

    /// Starts `arguments[0]` (looked up on PATH), stdin from /dev/null, stdout and stderr appended
    /// to `outputPath`, or inherited stdout and stderr when nil. With `outputToStandardError`,
    /// the child's stdout goes to this process's stderr (progress shown, results kept clean).
    /// With `newProcessGroup` the child leads its own process group, so `terminate` reaches the
    /// helpers it starts too (vLLM and TGI run several processes).
    public static func spawn(
        _ arguments: [String], environment: [String: String]? = nil, outputPath: String? = nil,
        outputToStandardError: Bool = false, newProcessGroup: Bool = false
    ) throws -> ChildProcess {
        precondition(!arguments.isEmpty, "a command needs a program")
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Descriptors Gantry holds without close-on-exec (its listening socket among them) must
        // not leak into children: an engine that outlives a crashed Gantry would keep the port
        // bound, and the restarted Gantry could not listen.
        closeInheritedDescriptors(&actions)
        if let outputPath {
            posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else if outputToStandardError {
            posix_spawn_file_actions_adddup2(&actions, 2, 1)
        }

        let environmentLines = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid = pid_t()
        var result: Int32 = 0
        // ETXTBSY: a program written moments ago (an installed engine, a test's script) can still
        // be open for writing in a child another thread is forking: that child's copy of the
        // descriptor closes at its exec, within milliseconds. Try again briefly, as Go's os/exec
        // users do, instead of failing the start.
        for attempt in 0..<20 {
            result = withCStrings(arguments) { argv in
                withCStrings(environmentLines) { envp in
                    posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
                }
            }
            guard result == ETXTBSY, attempt < 19 else { break }
            usleep(10_000)
        }
        guard result == 0 else {
            throw CocoaError(
                .fileNoSuchFile,
                userInfo: [NSLocalizedDescriptionKey: "cannot start \(arguments[0]): \(String(cString: strerror(result)))"])
        }
        return ChildProcess(pid: pid, leadsGroup: newProcessGroup)
    }

    /// The exit status once the process has ended (128 + signal when killed), else nil.
    /// Reaps the child, so it never lingers as a zombie.
    public var exitStatus: Int32? {
        status.withLock { cached in
            if let cached { return cached }
            var raw: Int32 = 0
            let reaped = waitpid(pid, &raw, WNOHANG)
            guard reaped == pid else {
                // ECHILD: already reaped elsewhere; treat as ended.
                if reaped == -1, errno == ECHILD { cached = -1 }
                return cached
            }
            let signal = raw & 0x7f
            cached = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            return cached
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    public func send(_ signal: Int32) {
        guard isRunning else { return }
        kill(leadsGroup ? -pid : pid, signal)
    }

    /// Waits for the process to end and returns its exit status.
    public func wait() async -> Int32 {
        while true {
            if let status = exitStatus { return status }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`.
    public func terminate(grace: Duration) async {
        guard isRunning else { return }
        send(SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(25))
        }
        if isRunning {
            send(SIGKILL)
            _ = await wait()
        }
        // Helpers the engine started may outlive it; none of the group stays behind.
        if leadsGroup { kill(-pid, SIGKILL) }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that lives for the call.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Adds "close every descriptor from 3 up" to the spawn's actions: glibc 2.34+ has
/// `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not export, so it
/// is looked up at run time. Elsewhere descriptors are expected to be close-on-exec already.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        return
    }
    _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
}
