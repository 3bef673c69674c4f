package daemon

import (
	"context"
	"fmt"
)

// handler serves one operation: it reads the arguments, calls startWork,
// does the work, calls stopWork and writes the result. An error before
// startWork ends the connection (see Conn.serveOp).
type handler func(ctx context.Context, c *Conn) error

// The operations, by number (docs/daemon.md, "Operations").
var ops = map[uint64]handler{}

var opNames = map[uint64]string{
	1: "IsValidPath", 3: "HasSubstitutes", 6: "QueryReferrers", 7: "AddToStore",
	8: "AddTextToStore", 9: "BuildPaths", 10: "EnsurePath", 11: "AddTempRoot",
	12: "AddIndirectRoot", 13: "SyncWithGC", 14: "FindRoots", 19: "SetOptions",
	20: "CollectGarbage", 21: "QuerySubstitutablePathInfo", 23: "QueryAllValidPaths",
	26: "QueryPathInfo", 29: "QueryPathFromHashPart", 30: "QuerySubstitutablePathInfos",
	31: "QueryValidPaths", 32: "QuerySubstitutablePaths", 33: "QueryValidDerivers",
	34: "OptimiseStore", 35: "VerifyStore", 36: "BuildDerivation", 37: "AddSignatures",
	38: "NarFromPath", 39: "AddToStoreNar", 40: "QueryMissing", 41: "QueryDerivationOutputMap",
	42: "RegisterDrvOutput", 43: "QueryRealisation", 44: "AddMultipleToStore",
	45: "AddBuildLog", 46: "BuildPathsWithResults",
}

func opName(op uint64) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return "unknown"
}

func init() {
	for op, h := range map[uint64]handler{
		1: opIsValidPath, 3: opHasSubstitutes, 6: opQueryReferrers, 7: opAddToStore,
		8: opAddTextToStore, 9: opBuildPaths, 10: opEnsurePath, 11: opAddTempRoot,
		12: opAddIndirectRoot, 13: opSyncWithGC, 14: opFindRoots, 19: opSetOptions,
		20: opCollectGarbage, 21: opQuerySubstitutablePathInfo, 23: opQueryAllValidPaths,
		26: opQueryPathInfo, 29: opQueryPathFromHashPart, 30: opQuerySubstitutablePathInfos,
		31: opQueryValidPaths, 32: opQuerySubstitutablePaths, 33: opQueryValidDerivers,
		34: opOptimiseStore, 35: opVerifyStore, 36: opBuildDerivation, 37: opAddSignatures,
		38: opNarFromPath, 39: opAddToStoreNar, 40: opQueryMissing, 41: opQueryDerivationOutputMap,
		42: opRegisterDrvOutput, 43: opQueryRealisation, 44: opAddMultipleToStore,
		45: opAddBuildLog, 46: opBuildPathsWithResults,
	} {
		if _, ok := opNames[op]; !ok {
			panic(fmt.Sprintf("daemon: op %d has no name", op))
		}
		ops[op] = h
	}
}

// errNotTrusted is an operation refused to an untrusted client.
func errNotTrusted(what string) error {
	return fmt.Errorf("you are not a trusted user of this daemon, so you may not %s", what)
}
