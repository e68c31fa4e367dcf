public import ArgumentParser

/// `gantry`: the root command. The executable target only calls `main()` on it.
public struct GantryCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "gantry",
        abstract: "Gantry: pool GPU machines, deploy models, serve them through one OpenAI-compatible API.",
        subcommands: [
            ServeCommand.self, QuickstartCommand.self, MigrateCommand.self, EnginesCommand.self, DemoModelCommand.self,
            LoginCommand.self, KeysCommand.self, UsersCommand.self, ResourcesCommand.self, ModelsCommand.self, DeployCommand.self,
            DeploymentsCommand.self, UsageCommand.self, FetchModelCommand.self,
        ]
    )
}
