package commands

// SplitAppend exposes splitAppend to the black-box tests: where a run of
// events of these sizes is cut into appends.
func SplitAppend(sizes []int, glued []bool, limit int) ([]int, error) {
	return splitAppend(sizes, glued, limit)
}
