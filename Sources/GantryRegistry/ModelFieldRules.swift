import Foundation
import GantryCore

/// The rules every model and version field must meet before anything is stored. Each failure
/// is a 400 naming the field, so an admin can fix the request without guessing.
enum ModelFieldRules {
    static let maxDescription = 4096
    static let maxLabels = 32

    /// Every metadata field of a version, as created or after a change.
    static func versionMetadata(_ version: ModelVersion) throws {
        try description(version.description)
        try format(version.format)
        try contextLimit(version.contextLimit)
        if let schema = version.inputSchema { try JSONSchemaCheck.validate(schema, param: "input_schema") }
        if let schema = version.outputSchema { try JSONSchemaCheck.validate(schema, param: "output_schema") }
        if let engine = version.defaultEngine { try engineName(engine) }
        try EngineArguments.validate(version.engineArgs)
    }

    static func description(_ text: String) throws {
        guard text.count <= maxDescription else {
            throw GantryError.invalid("description is longer than \(maxDescription) characters", param: "description")
        }
    }

    /// Label keys look like Kubernetes label names (`team`, `gantry.dev/tier`); values are short text.
    static func labels(_ labels: [String: String]) throws {
        guard labels.count <= maxLabels else {
            throw GantryError.invalid("at most \(maxLabels) labels are allowed", param: "labels")
        }
        for (key, value) in labels {
            let keyOK = key.utf8.allSatisfy {
                isLowerAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
                    || $0 == UInt8(ascii: "/")
            }
            guard !key.isEmpty, key.utf8.count <= 63, keyOK, let first = key.utf8.first, isLowerAlnum(first) else {
                throw GantryError.invalid(
                    "label key '\(key)' must be 1-63 lower-case letters, digits, '.', '-', '_' or '/', starting with a letter or digit",
                    param: "labels")
            }
            guard value.count <= 256, !value.contains(where: { $0.isNewline || $0 == "\0" }) else {
                throw GantryError.invalid(
                    "label '\(key)' has a value longer than 256 characters or with a line break", param: "labels")
            }
        }
    }

    /// An explicit version identifier: `3`, `2024-06-01`, `v1.2.0-rc1`. `@` and `/` are excluded
    /// because `name@version` addresses a version and versions appear in URL paths.
    static func versionIdentifier(_ version: String) throws {
        let allowed = version.utf8.allSatisfy {
            isLowerAlnum($0) || ($0 >= 65 && $0 <= 90) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                || $0 == UInt8(ascii: "_")
        }
        guard !version.isEmpty, version.utf8.count <= 64, allowed, version.first != ".", version.first != "-" else {
            throw GantryError.invalid(
                "version must be 1-64 letters, digits, '.', '-' or '_', not starting with '.' or '-'", param: "version")
        }
    }

    static func format(_ format: String) throws {
        let allowed = format.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }
        guard !format.isEmpty, format.utf8.count <= 32, allowed else {
            throw GantryError.invalid(
                "format must be 1-32 lower-case letters, digits, '-' or '_' (gguf, safetensors, onnx, ...)", param: "format")
        }
    }

    static func contextLimit(_ limit: Int) throws {
        let range = ModelVersion.contextLimitRange
        guard range.contains(limit) else {
            throw GantryError.invalid(
                "context_limit must be between \(range.lowerBound) and \(range.upperBound) tokens; got \(limit)",
                param: "context_limit")
        }
    }

    static func engineName(_ engine: String) throws {
        let allowed = engine.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
        guard !engine.isEmpty, engine.utf8.count <= 32, allowed else {
            throw GantryError.invalid(
                "default_engine must be 1-32 lower-case letters, digits or '-' (llama-cpp)", param: "default_engine")
        }
    }

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57)
    }
}

/// Relative paths of files inside a version: `model.gguf`, `tokenizer/tokenizer.json`.
public enum ModelFilePath {
    /// Refuses anything that could leave the version's directory or confuse a file system:
    /// absolute paths, `.` and `..` segments, empty segments, backslashes, control characters.
    public static func validate(_ path: String) throws {
        func refuse(_ reason: String) -> GantryError {
            GantryError.invalid("file path '\(path.prefix(200))' is not allowed: \(reason)", param: "path")
        }
        guard !path.isEmpty, path.utf8.count <= 1024 else { throw refuse("it must be 1-1024 bytes") }
        guard !path.hasPrefix("/") else { throw refuse("it must be relative") }
        guard !path.contains("\\"), !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw refuse("it contains a backslash or a control character")
        }
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            guard !segment.isEmpty else { throw refuse("it has an empty segment") }
            guard segment != ".", segment != ".." else { throw refuse("'.' and '..' segments are not allowed") }
            guard segment.utf8.count <= 255 else { throw refuse("a segment is longer than 255 bytes") }
        }
        guard path.split(separator: "/").count <= 16 else { throw refuse("it is nested more than 16 levels") }
    }
}
