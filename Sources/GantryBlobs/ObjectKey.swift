import GantryCore

/// Key checks shared by every store.
///
/// Callers validate keys before they reach a store; stores check again because a key that
/// escapes the root (`..`, an absolute path) would touch files outside it.
enum ObjectKey {
    /// Throws `GantryError.invalid` unless `key` is a relative, `/`-separated path whose segments
    /// are neither empty, `.` nor `..`, and which holds no NUL.
    static func validate(_ key: String) throws {
        guard !key.isEmpty else { throw GantryError.invalid("object key is empty", param: "key") }
        guard !key.utf8.contains(0) else { throw GantryError.invalid("object key contains NUL", param: "key") }
        // Splitting with omitted empty subsequences off finds a leading, trailing or doubled `/`.
        for segment in key.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." {
                throw GantryError.invalid("object key '\(key)' is not a relative path of named segments", param: "key")
            }
        }
    }

    /// Throws `GantryError.invalid` when a list prefix holds NUL; any other prefix is a plain
    /// string match.
    static func validatePrefix(_ prefix: String) throws {
        guard !prefix.utf8.contains(0) else { throw GantryError.invalid("object key prefix contains NUL", param: "prefix") }
    }
}
