import Foundation
import GantryCommands
import GantryStore
import GantryTestSupport
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    func configuration(
        flags: [GantrySetting: String] = [:], environment: [String: String] = [:], file: String? = nil
    ) async throws -> GantryConfiguration {
        var environment = environment
        environment["HOME"] = environment["HOME"] ?? "/home/tester"
        let reader = try await GantryConfiguration.reader(flags: flags, configFile: file, environment: environment)
        return try GantryConfiguration(reader: reader, environment: environment)
    }

    @Test("defaults: 127.0.0.1:8080, ~/.gantry, SQLite in the data directory")
    func defaults() async throws {
        let config = try await configuration()
        #expect(config.http.host == "127.0.0.1")
        #expect(config.http.port == 8080)
        #expect(config.dataDirectory == "/home/tester/.gantry")
        #expect(config.database == .sqlite(path: "/home/tester/.gantry/gantry.sqlite"))
        #expect(config.cacheDirectory == "/home/tester/.cache/gantry")
        #expect(config.engine.llamaServer.hasPrefix("/home/tester/.cache/gantry/engines/llama-cpp/"))
    }

    @Test("command line beats environment beats file beats default")
    func precedence() async throws {
        let directory = try TemporaryDirectory()
        let file = directory.path + "/gantry.json"
        try #"{"http": {"port": 7000, "host": "127.0.0.2"}, "engine": {"threads": 3}, "log": {"level": "debug"}}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let environment = ["GANTRY_HTTP_PORT": "7001", "GANTRY_ENGINE_THREADS": "5"]

        let fileOnly = try await configuration(file: file)
        #expect(fileOnly.http.port == 7000)
        #expect(fileOnly.engine.threads == 3)
        #expect(fileOnly.logLevel == .debug)

        let fileAndEnvironment = try await configuration(environment: environment, file: file)
        #expect(fileAndEnvironment.http.port == 7001)
        #expect(fileAndEnvironment.engine.threads == 5)
        #expect(fileAndEnvironment.http.host == "127.0.0.2")

        let all = try await configuration(flags: [.port: "7002"], environment: environment, file: file)
        #expect(all.http.port == 7002)
        #expect(all.engine.threads == 5)
    }

    @Test("invalid values stop start-up with a message naming the key, flag and variable")
    func invalidValues() async throws {
        let cases: [(GantrySetting, String)] = [
            (.port, "eighty"), (.port, "70000"), (.engineThreads, "0"), (.databaseURL, "mysql://x"),
            (.logLevel, "loud"), (.maxRequestBytes, "10"),
        ]
        for (setting, value) in cases {
            do {
                _ = try await configuration(flags: [setting: value])
                Issue.record("\(setting.key)=\(value) was accepted")
            } catch let error as ConfigurationError {
                #expect(error.description.contains(setting.key))
                #expect(error.description.contains("--\(setting.flag)"))
                #expect(error.description.contains(setting.environmentVariable))
            }
        }
        do {
            _ = try await configuration(environment: ["GANTRY_HTTP_PORT": "-1"])
            Issue.record("a negative port from the environment was accepted")
        } catch let error as ConfigurationError {
            #expect(error.description.contains("GANTRY_HTTP_PORT"))
        }
    }

    @Test("every setting is read from its documented environment variable")
    func everyEnvironmentVariableIsRead() async throws {
        // OIDC settings are read only when an issuer is configured.
        let withOIDC = [
            GantrySetting.oidcIssuer.environmentVariable: "http://127.0.0.1:9",
            GantrySetting.oidcClientID.environmentVariable: "x",
        ]
        for setting in GantrySetting.all {
            // An empty value is invalid for every setting, so an error naming the key proves the
            // variable reached it.
            var environment = withOIDC
            environment[setting.environmentVariable] = ""
            do {
                _ = try await configuration(environment: environment)
                Issue.record("\(setting.environmentVariable) was not read")
            } catch let error as ConfigurationError {
                #expect(error.description.contains(setting.key), "\(setting.environmentVariable): \(error)")
            }
        }
    }

    @Test("a database password never appears when the location is printed")
    func databaseURLIsRedacted() throws {
        let location = try DatabaseLocation(url: "postgres://gantry:s3cret@db.internal:5432/gantry")
        #expect(!location.description.contains("s3cret"))
        #expect(location.description == "postgres://db.internal:5432/gantry")
    }

    @Test("docs/configuration.md lists every key with its flag and variable")
    func documentationIsComplete() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let document = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        for setting in GantrySetting.all {
            #expect(document.contains("`\(setting.key)`"), "missing key \(setting.key)")
            #expect(document.contains("`--\(setting.flag)`"), "missing flag --\(setting.flag)")
            #expect(document.contains("`\(setting.environmentVariable)`"), "missing variable \(setting.environmentVariable)")
        }
    }

    @Test("every setting is a flag of serve and quickstart")
    func everySettingIsAFlag() throws {
        for setting in GantrySetting.all {
            let options = try ServerOptions.parse(["--\(setting.flag)", "value-of-\(setting.flag)"])
            #expect(options.flags[setting] == "value-of-\(setting.flag)", "--\(setting.flag) is not passed on")
        }
    }

}
