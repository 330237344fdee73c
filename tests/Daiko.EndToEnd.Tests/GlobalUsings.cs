global using Xunit;

// Two streams of tests at once, one a core: the hosted deployment's tests and the benchmarks' quick runs in one
// (SecondStream), every other test in the other, each stream one test at a time. Most of these tests wait on the
// processes they start, so the two keep both cores busy where one stream left one idle.
[assembly: CollectionBehavior(CollectionBehavior.CollectionPerAssembly, MaxParallelThreads = 2)]

namespace Daiko.EndToEnd.Tests
{
    /// <summary>
    /// The collection run beside the rest: hosted-deployment tests and the benchmarks' quick runs, one at a time. Every test
    /// that opens a PKCS#11 token in this process belongs here (the process holds one module at a time, and opening it
    /// sets SOFTHSM2_CONF for the whole process).
    /// </summary>
    [CollectionDefinition(Name)]
    public static class SecondStream
    {
        public const string Name = "hosted deployment and benchmarks";
    }
}
