import NIOCore

/// The idle keep-alive connections to one engine, oldest first, each with the time it became idle.
///
/// Why an age limit: engines close idle keep-alive connections themselves (llama-server and
/// uvicorn, under vLLM, after 5 s; measured for llama-server 0.3.36). A request written on a
/// connection at the moment the engine closes it is lost: the relay would see the engine hang up
/// before answering, answer 502 and take the instance out of rotation. Handing out only
/// connections idle for less than `limit`, well under those timeouts, avoids that race; a new
/// connection costs one TCP connect.
struct IdleConnections<Connection: AnyObject> {
    static var defaultLimit: TimeAmount { EngineClients.idleConnectionLimit }

    let limit: TimeAmount
    private var entries: [(connection: Connection, since: NIODeadline)] = []

    init(limit: TimeAmount = Self.defaultLimit) {
        self.limit = limit
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    mutating func add(_ connection: Connection, now: NIODeadline) {
        entries.append((connection, now))
    }

    /// The most recently idle connection if it is young enough; and every connection that is
    /// too old, taken out to be closed.
    mutating func take(now: NIODeadline) -> (fresh: Connection?, stale: [Connection]) {
        guard let newest = entries.popLast() else { return (nil, []) }
        if now - newest.since < limit { return (newest.connection, removeStale(now: now)) }
        // The newest is too old, so all are.
        let stale = [newest.connection] + entries.map(\.connection)
        entries.removeAll()
        return (nil, stale)
    }

    /// Takes out the connections idle for `limit` or longer (the oldest are first).
    mutating func removeStale(now: NIODeadline) -> [Connection] {
        guard let firstYoung = entries.firstIndex(where: { now - $0.since < limit }) else {
            defer { entries.removeAll() }
            return entries.map(\.connection)
        }
        defer { entries.removeFirst(firstYoung) }
        return entries[..<firstYoung].map(\.connection)
    }

    mutating func remove(_ connection: Connection) {
        entries.removeAll { $0.connection === connection }
    }
}
