import GantryCore
import NIOFileSystem

extension LocalDirectoryObjectStore {
    public func list(prefix: String) async throws -> [ObjectInfo] {
        try ObjectKey.validatePrefix(prefix)
        // Walk only the directory that every match lies in: the prefix up to its last `/`.
        var start = root
        if let slash = prefix.lastIndex(of: "/") {
            let directory = String(prefix[..<slash])
            // Segments no key may have (`..`, empty) match nothing, and must not steer the walk
            // outside the root.
            guard (try? ObjectKey.validate(directory)) != nil else { return [] }
            start = root.appending(directory)
        }
        guard let info = try await fileInfo(start, ofLink: false), info.type == .directory else { return [] }

        let rootPrefix = root.string.hasSuffix("/") ? root.string : root.string + "/"
        let stagingPrefix = Self.stagingName + "/"
        var objects: [ObjectInfo] = []
        do {
            try await FileSystem.shared.withDirectoryHandle(atPath: start) { directory in
                for try await batch in directory.listContents(recursive: true).batched() {
                    for entry in batch where entry.type == .regular {
                        let path = entry.path.string
                        guard path.hasPrefix(rootPrefix) else { continue }
                        let key = String(path.dropFirst(rootPrefix.count))
                        guard key.hasPrefix(prefix), !key.hasPrefix(stagingPrefix) else { continue }
                        // The file can vanish between listing and stat (a concurrent delete).
                        guard let info = try await FileSystem.shared.info(forFileAt: entry.path, infoAboutSymbolicLink: true)
                        else { continue }
                        objects.append(ObjectInfo(key: key, size: info.size))
                    }
                }
            }
        } catch {
            throw Self.wrap(error, "cannot list \(start)")
        }
        return objects.sorted { $0.key < $1.key }
    }
}
