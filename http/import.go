package http

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/fleetjobs/fleetjobs/domain"
)

// importRow is one NDJSON line of POST /devices:import: the body of
// PUT /devices/{deviceId} plus the deviceId.
type importRow struct {
	DeviceID   string         `json:"deviceId"`
	Name       string         `json:"name"`
	TemplateID string         `json:"templateId"`
	Properties map[string]any `json:"properties"`
}

// CSV import columns: the fixed ones first, in this order, then one column
// per property named csvPropPrefix + the property's name.
const csvPropPrefix = "prop."

func csvFixedColumns() []string { return []string{"deviceId", "name", "templateId"} }

// importAnswer is the body of a successful import.
type importAnswer struct {
	Total      int `json:"total"`
	Registered int `json:"registered"`
	Updated    int `json:"updated"`
	Unchanged  int `json:"unchanged"`
	// DeviceKeys are the keys of the devices this import registered,
	// shown once (a retry of the import answers without them).
	DeviceKeys []DeviceKey `json:"deviceKeys"`
}

// importDevices is POST /devices:import. Every row is parsed and checked
// before anything is recorded; any bad row refuses the whole import with
// every row's problems (422), so a file can be fixed in one pass.
func (s *Server) importDevices(c echo.Context) error {
	mt, err := requireMediaType(c.Request(), MIMENDJSON, MIMECSV)
	if err != nil {
		return err
	}
	body, err := readBody(c, s.maxImport)
	if err != nil {
		return err
	}
	var rows []ImportRow
	var bad map[int][]FieldError // parse problems by row; -1 is the body as a whole
	if mt == MIMECSV {
		rows, bad = parseCSVImport(body)
	} else {
		rows, bad = s.parseNDJSONImport(body)
	}
	problems, refused := checkImportRows(rows, bad)
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		if len(bad[-1]) > 0 || len(refused) == len(rows) {
			return &ImportError{Fields: problems} // no row left to check
		}
		// The other rows' problems too, in one answer, recording nothing.
		_, err := s.devices.ImportDevices(c.Request().Context(), ImportDevices{Meta: meta, Rows: rows, Refused: refused})
		if err != nil && domain.ErrorCode(err) != domain.CodeInvalid {
			return err
		}
		return &ImportError{Fields: byRow(append(problems, fieldsOf(err)...))}
	}
	res, err := s.devices.ImportDevices(c.Request().Context(), ImportDevices{Meta: meta, Rows: rows})
	if domain.ErrorCode(err) == domain.CodeInvalid {
		// Rows the domain refused (fields "rows[i]...."): the whole
		// import is refused, like rows that do not parse.
		return &ImportError{Fields: fieldsOf(err)}
	}
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Token)
	return c.JSON(http.StatusOK, importAnswer{Total: len(rows), Registered: res.Registered, Updated: res.Updated, Unchanged: res.Unchanged, DeviceKeys: orEmpty(res.Keys)})
}

// rowField names a field of row i.
func rowField(i int, field string) string {
	p := "rows[" + strconv.Itoa(i) + "]"
	if field == "" {
		return p
	}
	return p + "." + field
}

// parseNDJSONImport parses one device per line. Blank lines are skipped
// and are not rows: rows[i] is the i-th non-blank line, from 0. A row that
// does not parse keeps its place (as a zero row) and its problems are in
// bad, by row; bad[-1] holds problems of the body as a whole.
//
// Rows are independent, so a large body is decoded by one goroutine per
// CPU, each on its own share of the lines: decoding is most of what an
// import of 100,000 devices costs before anything is recorded.
func (s *Server) parseNDJSONImport(body []byte) ([]ImportRow, map[int][]FieldError) {
	var lines [][]byte
	for rest := body; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte{'\n'})
		rest = after
		if line = bytes.TrimSpace(line); len(line) > 0 {
			lines = append(lines, line)
		}
	}
	rows := make([]ImportRow, len(lines))
	problems := make([][]FieldError, len(lines))
	parse := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var r importRow
			problems[i] = s.binder.decode(lines[i], &r, rowField(i, ""))
			rows[i] = ImportRow(r)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(lines)/parallelParseRows)
	if workers <= 1 {
		parse(0, len(lines))
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := w*len(lines)/workers, (w+1)*len(lines)/workers
			wg.Go(func() { parse(lo, hi) })
		}
		wg.Wait()
	}
	bad := make(map[int][]FieldError)
	for i, p := range problems {
		if len(p) > 0 {
			bad[i] = p
		}
	}
	if len(rows) == 0 {
		bad[-1] = append(bad[-1], FieldError{Field: bodyField, Message: "no rows: want one JSON object per line"})
	}
	return rows, bad
}

// parallelParseRows is how many rows each goroutine of a parallel NDJSON
// parse gets at least: below it, one goroutine is as fast.
const parallelParseRows = 1000

// parseCSVImport parses a header row (deviceId,name,templateId, then
// prop.NAME columns) and one device per row. A property cell holds JSON
// when it parses as JSON (1200, true, {"a":1}, "quoted text"), else it is
// taken as a plain string; an empty cell leaves the property out. rows[i]
// is the i-th record after the header, from 0.
func parseCSVImport(body []byte) ([]ImportRow, map[int][]FieldError) {
	bad := make(map[int][]FieldError)
	r := csv.NewReader(bytes.NewReader(body))
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		bad[-1] = []FieldError{{Field: bodyField, Message: "no header row: want deviceId,name,templateId,prop.NAME..."}}
		return nil, bad
	}
	if err != nil {
		bad[-1] = []FieldError{{Field: "header", Message: csvMessage(err)}}
		return nil, bad
	}
	props, problems := parseCSVHeader(header)
	if len(problems) > 0 {
		bad[-1] = problems
		return nil, bad
	}
	var rows []ImportRow
	for {
		i := len(rows)
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad[i] = []FieldError{{Field: rowField(i, ""), Message: csvMessage(err)}}
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				rows = append(rows, ImportRow{}) // the reader can go on after a short or long record
				continue
			}
			// A quoting error leaves the reader lost: the rows after it
			// cannot be found. The row keeps its place, so that its
			// problem is reported with the others' and nothing is
			// recorded.
			rows = append(rows, ImportRow{})
			break
		}
		row := ImportRow{DeviceID: rec[0], Name: rec[1], TemplateID: rec[2], Properties: make(map[string]any, len(props))}
		var problems []FieldError
		for j, col := range csvFixedColumns() {
			if !utf8.ValidString(rec[j]) {
				add(&problems, rowField(i, col), textMessage)
			}
		}
		for j, name := range props {
			cell := rec[3+j]
			if cell == "" {
				continue
			}
			checkCSVCell(&problems, rowField(i, "properties."+name), cell)
			row.Properties[name] = csvValue(cell)
		}
		if len(problems) > 0 {
			bad[i] = problems
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 && len(bad) == 0 {
		bad[-1] = []FieldError{{Field: bodyField, Message: "no rows after the header"}}
	}
	return rows, bad
}

func parseCSVHeader(header []string) ([]string, []FieldError) {
	var fe fieldErrors
	fixed := csvFixedColumns()
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a BOM from spreadsheet exports
	}
	if len(header) < len(fixed) {
		fe.add("header", "want the columns deviceId,name,templateId first, then prop.NAME columns")
		return nil, fe.list
	}
	for i, want := range fixed {
		if header[i] != want {
			fe.add("header["+strconv.Itoa(i)+"]", fmt.Sprintf("is %q, want %q", header[i], want))
		}
	}
	var props []string
	seen := make(map[string]bool)
	for i, col := range header[len(fixed):] {
		field := "header[" + strconv.Itoa(len(fixed)+i) + "]"
		name, ok := strings.CutPrefix(col, csvPropPrefix)
		switch {
		case !ok || strings.TrimSpace(name) == "":
			fe.add(field, fmt.Sprintf("is %q, want prop.NAME", col))
		case seen[name]:
			fe.add(field, fmt.Sprintf("column %q appears twice", col))
		}
		seen[name] = true
		props = append(props, name)
	}
	return props, fe.list
}

// csvValue is a property cell's value: its JSON value if it is JSON, else
// the text itself.
func csvValue(cell string) any {
	var v any
	dec := json.NewDecoder(strings.NewReader(cell))
	if err := dec.Decode(&v); err == nil && !dec.More() {
		if _, err := dec.Token(); errors.Is(err, io.EOF) && v != nil {
			return v
		}
	}
	return cell
}

// checkCSVCell adds the problems of a property cell (at path) whose value
// would not be kept as sent, as the binder finds them in a JSON body:
// bytes that are not UTF-8; and in a cell that holds JSON (csvValue), a
// lone surrogate escape, an integer beyond 2^53, nesting deeper than
// MaxJSONDepth.
func checkCSVCell(fields *[]FieldError, path, cell string) {
	if !utf8.ValidString(cell) {
		add(fields, path, textMessage)
		return
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(cell))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		return // plain text
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return
	}
	if suspectText([]byte(cell)) {
		if fe, ok := rawProblem([]byte(cell), false); ok {
			add(fields, joinPrefix(path, fe.Field), fe.Message)
			return
		}
	}
	checkFree(v, path, fields)
}

// csvMessage is the CSV reader's error as a row's problem: the line the
// record starts on, and where the parser stopped if that is elsewhere (a
// quoted field that is never closed runs to the end of the body).
func csvMessage(err error) string {
	var pe *csv.ParseError
	switch {
	case !errors.As(err, &pe):
		return err.Error()
	case errors.Is(pe.Err, csv.ErrFieldCount):
		return fmt.Sprintf("line %d: %v", pe.Line, pe.Err)
	case pe.StartLine != pe.Line:
		return fmt.Sprintf("line %d (parse error on line %d, column %d): %v", pe.StartLine, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Sprintf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
}

// checkImportRows applies PUT /devices' shape checks to every row that
// parsed, refuses a deviceId that appears twice (which row would win is
// not something to guess), and lists every problem, parse problems
// included, in row order; refused holds the rows with a problem.
func checkImportRows(rows []ImportRow, bad map[int][]FieldError) (problems []FieldError, refused map[int]bool) {
	var fe fieldErrors
	fe.addAll(bad[-1])
	refused = make(map[int]bool)
	first := make(map[string]int, len(rows))
	for i := range rows {
		if parse, ok := bad[i]; ok {
			fe.addAll(parse)
			refused[i] = true
			continue
		}
		var rf fieldErrors // this row's problems
		r := &rows[i]
		checkID(&rf, rowField(i, "deviceId"), r.DeviceID)
		if j, dup := first[r.DeviceID]; dup {
			rf.add(rowField(i, "deviceId"), "duplicates "+rowField(j, "deviceId"))
		} else {
			first[r.DeviceID] = i
		}
		checkName(&rf, rowField(i, "name"), r.Name)
		checkID(&rf, rowField(i, "templateId"), r.TemplateID)
		checkProperties(&rf, rowField(i, "properties"), r.Properties)
		if r.Properties == nil {
			r.Properties = map[string]any{}
		}
		if len(rf.list) > 0 {
			fe.addAll(rf.list)
			refused[i] = true
		}
	}
	return fe.list, refused
}

// byRow sorts the problems of an import by row ("rows[3]..."), keeping
// the order of each row's own; problems of no row come first.
func byRow(fields []FieldError) []FieldError {
	slices.SortStableFunc(fields, func(a, b FieldError) int { return cmp.Compare(rowOf(a.Field), rowOf(b.Field)) })
	if len(fields) > maxFieldErrors {
		fields = fields[:maxFieldErrors]
	}
	return fields
}

// rowOf is the row a field of an import names ("rows[3].name": 3), -1 for
// none.
func rowOf(field string) int {
	rest, ok := strings.CutPrefix(field, "rows[")
	if !ok {
		return -1
	}
	n, _, _ := strings.Cut(rest, "]")
	i, err := strconv.Atoi(n)
	if err != nil {
		return -1
	}
	return i
}
