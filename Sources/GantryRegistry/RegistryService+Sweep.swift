import GantryCore

extension RegistryService {
    /// Removes objects under `models/` that no file record points at: a put whose process died
    /// between its last byte and its database row, or a deletion whose object removal failed.
    ///
    /// Two sweeps decide, not one: an upload in progress on any replica has its object stored a
    /// moment before its row, so an object is removed only when it was unreferenced at the
    /// previous sweep too (`candidates`, what that sweep returned), an hour or so before. Returns
    /// the unreferenced objects seen now and kept, for the next sweep. Listing comes before
    /// reading the rows, so a row written meanwhile counts.
    public func sweepUnreferencedObjects(candidates previous: Set<String>) async throws -> Set<String> {
        let stored = Set(try await objects.list(prefix: "models/").map(\.key))
        var referenced: Set<String> = []
        for model in try await models.listModels() {
            for version in try await models.listVersions(modelID: model.id) {
                for file in try await models.files(versionID: version.id) { referenced.insert(file.objectKey) }
            }
        }
        let unreferenced = stored.subtracting(referenced)
        let removable = unreferenced.intersection(previous)
        for key in removable.sorted() { try await objects.delete(key) }
        if !removable.isEmpty {
            logger.warning("removed objects no model file points at", metadata: ["objects": "\(removable.count)"])
        }
        return unreferenced.subtracting(removable)
    }

    /// Sweeps every `interval` until cancelled (while this control replica leads).
    public func sweepUnreferencedObjects(every interval: Duration) async {
        var candidates: Set<String> = []
        while !Task.isCancelled {
            do {
                candidates = try await sweepUnreferencedObjects(candidates: candidates)
            } catch {
                logger.warning("cannot sweep unreferenced objects", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
