import Foundation
public import GantryCore

/// Checks that a value is a well-formed JSON Schema (draft 2020-12 and the drafts it grew from):
/// every keyword Gantry knows has a value of the right shape, and nested schemas are checked
/// the same way. Unknown keywords are allowed, as the specification allows them.
///
/// This is a structural check of the schema itself, not validation of data against it.
public enum JSONSchemaCheck {
    static let typeNames: Set<String> = ["null", "boolean", "object", "array", "number", "string", "integer"]
    static let schemaKeywords: Set<String> = [
        "not", "additionalProperties", "additionalItems", "contains", "propertyNames", "if", "then", "else",
        "unevaluatedProperties", "unevaluatedItems", "contentSchema",
    ]
    static let schemaMapKeywords: Set<String> = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]
    static let schemaArrayKeywords: Set<String> = ["allOf", "anyOf", "oneOf", "prefixItems"]
    static let numberKeywords: Set<String> = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
    static let countKeywords: Set<String> = [
        "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains",
    ]
    static let stringKeywords: Set<String> = [
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$comment", "title", "description", "format",
        "contentEncoding", "contentMediaType",
    ]
    static let booleanKeywords: Set<String> = ["uniqueItems", "readOnly", "writeOnly", "deprecated"]
    static let maxDepth = 32

    /// Throws a 400 naming `param` and the JSON Pointer of the first problem found.
    public static func validate(_ schema: JSONValue, param: String) throws {
        if let problem = problem(in: schema, at: "", depth: 0) {
            throw GantryError.invalid("\(param) is not a valid JSON Schema: \(problem)", param: param)
        }
    }

    /// The first problem, as "at /pointer: what is wrong", or nil for a valid schema.
    static func problem(in schema: JSONValue, at pointer: String, depth: Int) -> String? {
        guard depth <= maxDepth else { return "at \(pointer.isEmpty ? "/" : pointer): nested deeper than \(maxDepth) levels" }
        let object: [String: JSONValue]
        switch schema {
        case .bool: return nil
        case .object(let value): object = value
        default: return "at \(pointer.isEmpty ? "/" : pointer): a schema must be an object or a boolean"
        }
        for (keyword, value) in object.sorted(by: { $0.key < $1.key }) {
            let here = pointer + "/" + keyword.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
            if let problem = keywordProblem(keyword, value, at: here, depth: depth) { return problem }
        }
        return nil
    }

    private static func keywordProblem(_ keyword: String, _ value: JSONValue, at here: String, depth: Int) -> String? {
        func wrong(_ expectation: String) -> String { "at \(here): \(keyword) must be \(expectation)" }
        switch keyword {
        case "type":
            switch value {
            case .string(let name):
                return typeNames.contains(name) ? nil : "at \(here): '\(name)' is not a JSON Schema type"
            case .array(let names):
                let strings = names.compactMap { if case .string(let name) = $0 { name } else { nil } }
                guard !strings.isEmpty, strings.count == names.count, Set(strings).count == strings.count,
                    strings.allSatisfy(typeNames.contains)
                else { return wrong("a type name or a non-empty array of distinct type names") }
                return nil
            default:
                return wrong("a type name or an array of type names")
            }
        case _ where schemaKeywords.contains(keyword):
            return problem(in: value, at: here, depth: depth + 1)
        case _ where schemaMapKeywords.contains(keyword):
            guard case .object(let members) = value else { return wrong("an object of schemas") }
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                if let problem = problem(in: member, at: here + "/" + name, depth: depth + 1) { return problem }
            }
            return nil
        case _ where schemaArrayKeywords.contains(keyword):
            guard case .array(let members) = value, !members.isEmpty else { return wrong("a non-empty array of schemas") }
            for (index, member) in members.enumerated() {
                if let problem = problem(in: member, at: "\(here)/\(index)", depth: depth + 1) { return problem }
            }
            return nil
        case "items":
            // A schema (2020-12) or, in older drafts, an array of schemas.
            if case .array(let members) = value {
                for (index, member) in members.enumerated() {
                    if let problem = problem(in: member, at: "\(here)/\(index)", depth: depth + 1) { return problem }
                }
                return nil
            }
            return problem(in: value, at: here, depth: depth + 1)
        case "required":
            guard case .array(let names) = value else { return wrong("an array of property names") }
            let strings = names.compactMap { if case .string(let name) = $0 { name } else { nil } }
            guard strings.count == names.count, Set(strings).count == strings.count else {
                return wrong("an array of distinct strings")
            }
            return nil
        case "enum":
            guard case .array = value else { return wrong("an array") }
            return nil
        case "multipleOf":
            guard case .number(let number) = value, number > 0 else { return wrong("a number greater than 0") }
            return nil
        case _ where numberKeywords.contains(keyword):
            guard case .number = value else { return wrong("a number") }
            return nil
        case _ where countKeywords.contains(keyword):
            guard case .number(let number) = value, number >= 0, number.rounded() == number else {
                return wrong("a non-negative integer")
            }
            return nil
        case "pattern":
            guard case .string(let pattern) = value else { return wrong("a regular expression string") }
            guard (try? NSRegularExpression(pattern: pattern)) != nil else {
                return "at \(here): '\(pattern)' is not a valid regular expression"
            }
            return nil
        case _ where stringKeywords.contains(keyword):
            guard case .string = value else { return wrong("a string") }
            return nil
        case _ where booleanKeywords.contains(keyword):
            guard case .bool = value else { return wrong("true or false") }
            return nil
        case "examples":
            guard case .array = value else { return wrong("an array") }
            return nil
        default:
            return nil
        }
    }
}
