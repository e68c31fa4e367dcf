import GantryCore

/// Uploads in progress on this process, one per version and path.
///
/// A second upload of the same path while one runs gets 409 at once instead of racing it, and a
/// version cannot be completed while any of its files is still arriving. Correctness across
/// several replicas does not rest on this table: every upload writes its own object key, and the
/// database row that points at it is swapped in one transaction (see `RegistryService.upload`).
actor UploadLeases {
    private var active: Set<String> = []

    func acquire(versionID: String, path: String) throws {
        let key = versionID + "\n" + path
        guard !active.contains(key) else {
            throw GantryError.conflict("an upload of '\(path)' to this version is already in progress")
        }
        active.insert(key)
    }

    func release(versionID: String, path: String) {
        active.remove(versionID + "\n" + path)
    }

    /// Paths of the version's files being uploaded now, sorted.
    func paths(versionID: String) -> [String] {
        active.filter { $0.hasPrefix(versionID + "\n") }.map { String($0.dropFirst(versionID.count + 1)) }.sorted()
    }

}
