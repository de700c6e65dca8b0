/** The record format of results.json and the table printed on stdout. */

export interface Goal {
  /** What the goal is checked on: the ratio value/reference, the value, or value - reference. */
  on: 'ratio' | 'value' | 'added';
  op: '>=' | '<=';
  target: number;
  text: string;
}

export const atLeast = (target: number, on: Goal['on'], text: string): Goal => ({
  on,
  op: '>=',
  target,
  text,
});
export const atMost = (target: number, on: Goal['on'], text: string): Goal => ({
  on,
  op: '<=',
  target,
  text,
});

export interface ResultRecord {
  case: string;
  subject: string;
  reference: string | null;
  metric: string;
  unit: string;
  /** Median over the runs. */
  value: number;
  referenceValue: number | null;
  ratio: number | null;
  /** value - referenceValue (what the steal path adds, for latency). */
  difference: number | null;
  /** How many runs the medians are taken over. */
  runs: number;
  /** Min and max over the runs, and (max - min) / median, for the subject and the reference. */
  spread: {
    subject: { min: number; max: number; relative: number };
    reference: { min: number; max: number; relative: number } | null;
  };
  samples: { subject: number[]; reference: number[] | null };
  goal: string | null;
  met: boolean | null;
  notes: string;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function spreadOf(values: number[]) {
  const min = Math.min(...values);
  const max = Math.max(...values);
  const m = median(values);
  return { min: round(min), max: round(max), relative: m ? round((max - min) / m, 3) : 0 };
}

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * One row of a case: subject, reference (null: an absolute goal), metric, unit, the subject's and
 * the reference's samples, the goal (null: for information), and notes of its own if any.
 */
export type Comparison = [
  subject: string,
  reference: string | null,
  metric: string,
  unit: string,
  subjectSamples: number[],
  referenceSamples: number[] | null,
  goal: Goal | null,
  notes?: string,
];

/** The records of one case, a row each; rows without notes of their own get the case's. */
export function caseRecords(caseName: string, notes: string, rows: Comparison[]): ResultRecord[] {
  return rows.map(([subject, reference, metric, unit, subjectSamples, referenceSamples, goal, own]) =>
    makeRecord({
      case: caseName,
      subject,
      reference,
      metric,
      unit,
      subjectSamples,
      referenceSamples,
      goal,
      notes: own ?? notes,
    }),
  );
}

export function makeRecord(input: {
  case: string;
  subject: string;
  reference: string | null;
  metric: string;
  unit: string;
  subjectSamples: number[];
  referenceSamples: number[] | null;
  goal: Goal | null;
  notes: string;
}): ResultRecord {
  const value = median(input.subjectSamples);
  const referenceValue = input.referenceSamples ? median(input.referenceSamples) : null;
  const ratio = referenceValue ? value / referenceValue : null;
  let met: boolean | null = null;
  if (input.goal) {
    const g = input.goal;
    const checked =
      g.on === 'ratio' ? ratio : g.on === 'added' ? value - (referenceValue ?? Number.NaN) : value;
    met =
      checked !== null &&
      Number.isFinite(checked) &&
      (g.op === '>=' ? checked >= g.target : checked <= g.target);
  }
  return {
    case: input.case,
    subject: input.subject,
    reference: input.reference,
    metric: input.metric,
    unit: input.unit,
    value: round(value),
    referenceValue: referenceValue === null ? null : round(referenceValue),
    ratio: ratio === null ? null : round(ratio),
    difference: referenceValue === null ? null : round(value - referenceValue),
    runs: input.subjectSamples.length,
    spread: {
      subject: spreadOf(input.subjectSamples),
      reference: input.referenceSamples ? spreadOf(input.referenceSamples) : null,
    },
    samples: {
      subject: input.subjectSamples.map((x) => round(x)),
      reference: input.referenceSamples?.map((x) => round(x)) ?? null,
    },
    goal: input.goal?.text ?? null,
    met,
    notes: input.notes,
  };
}

function fmt(x: number | null): string {
  if (x === null) return '-';
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

export function table(records: ResultRecord[]): string {
  const header = [
    'case',
    'subject',
    'reference',
    'metric',
    'value',
    'ref',
    'ratio',
    'diff',
    'spread s/r',
    'goal',
    'met',
  ];
  const rows = records.map((r) => [
    r.case,
    r.subject,
    r.reference ?? '-',
    `${r.metric} (${r.unit})`,
    fmt(r.value),
    fmt(r.referenceValue),
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`,
    r.difference === null ? '-' : `${r.difference >= 0 ? '+' : ''}${fmt(r.difference)}`,
    `±${(r.spread.subject.relative * 50).toFixed(0)}%/${r.spread.reference ? `±${(r.spread.reference.relative * 50).toFixed(0)}%` : '-'}`,
    r.goal ?? '-',
    r.met === null ? '-' : r.met ? 'MET' : 'MISSED',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
