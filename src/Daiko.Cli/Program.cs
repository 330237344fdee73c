using System.CommandLine;

namespace Daiko.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Daiko: a credential-holding proxy. Your certificate, key and e-money stay in the home card; terminals get sessions.");
        return root.Parse(args).Invoke();
    }
}
