public import Foundation
import GantryCore

/// The fields of an OpenAI request body the data plane must read before forwarding it.
/// The body itself is forwarded unchanged.
public struct InferenceRequest: Sendable, Equatable {
    /// The deployment name, without any `@version` suffix.
    public var deployment: String
    /// The version pinned with `name@version`, if any.
    public var pinnedVersion: String?
    public var stream: Bool
    public var maxTokens: Int?

    /// Only these fields are decoded; JSONDecoder is strict about their types (no `1` for `true`,
    /// no `1.5` for an integer), which is what the OpenAI API promises too.
    private struct Fields: Decodable {
        var model: String?
        var stream: Bool?
        var max_tokens: Int?
        var max_completion_tokens: Int?
    }

    /// Parses a JSON body; every problem is a 400 in the OpenAI envelope naming the field.
    public static func parse(_ body: Data) throws -> InferenceRequest {
        let fields: Fields
        do {
            fields = try JSONDecoder().decode(Fields.self, from: body)
        } catch let DecodingError.typeMismatch(_, context) where !context.codingPath.isEmpty {
            let name = context.codingPath[0].stringValue
            throw GantryError.invalid("\(name) has the wrong type", param: name, code: "invalid_type")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            let name = context.codingPath[0].stringValue
            throw GantryError.invalid("\(name) has an invalid value", param: name, code: "invalid_value")
        } catch {
            throw GantryError.invalid("request body is not a JSON object", code: "invalid_json")
        }
        guard let model = fields.model, !model.isEmpty else {
            throw GantryError.invalid("you must provide a model parameter", param: "model", code: "missing_required_parameter")
        }
        var deployment = model
        var pinnedVersion: String?
        if let at = model.firstIndex(of: "@") {
            deployment = String(model[..<at])
            pinnedVersion = String(model[model.index(after: at)...])
        }
        for (name, value) in [("max_tokens", fields.max_tokens), ("max_completion_tokens", fields.max_completion_tokens)] {
            if let value, value < 1 {
                throw GantryError.invalid("\(name) must be at least 1", param: name, code: "invalid_value")
            }
        }
        return InferenceRequest(
            deployment: deployment, pinnedVersion: pinnedVersion, stream: fields.stream ?? false,
            maxTokens: fields.max_completion_tokens ?? fields.max_tokens)
    }
}
