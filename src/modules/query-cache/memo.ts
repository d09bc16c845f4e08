// What the cache remembers of statement texts between requests, within fixed bounds: a text's shape and analysis once it came twice, analyses by structure and by template.

import { LRUCache } from "lru-cache";
import type { ByteSpan, QueryCtx } from "../../core/hooks.ts";
import { parseSql } from "../../sql/classify.ts";
import type { Effect } from "../../sql/session-effects.ts";
import { TemplateIndex, type Learned } from "../../sql/template-index.ts";
import type { Analysis, Analyzer } from "./analysis.ts";
import { SeenTexts } from "./seen.ts";
import { settingsEffects } from "./sessions.ts";
import { shapeOf, type Shape } from "./shape.ts";

/** Statement text -> its shape and analysis (analyses are shared by structure). */
export interface Known {
  /** Null when found by template (sql/template-index.ts): the text was not lexed; lexed() gives it when needed. */
  readonly shape: Shape | null;
  readonly analysis: Analysis;
  /** Session effects of the text, by the core's scan (SET, RESET, DISCARD ALL, set_config, savepoints). */
  readonly fx: Effect;
  /** The text's fingerprint (as GET /queries shows it), once an entry of it was stored. */
  fingerprint?: string;
  /** The template the text made, when it made one (a session's next statement is looked for after it). */
  learned?: Learned<Known> | null;
}

/** Bounds of what is remembered: entries and estimated bytes (GET /cache reports both). */
export const TEXTS_MAX = 20_000;
export const TEXTS_MAX_BYTES = 16 * 1024 * 1024;
export const STRUCTURES_MAX = 10_000;
export const STRUCTURES_MAX_BYTES = 8 * 1024 * 1024;
/** Template hashes kept (each with up to 4 templates); only texts up to TEMPLATE_MAX_CHARS make one, so a template costs a few KB at most. */
export const TEMPLATES_MAX = 10_000;
const TEMPLATE_MAX_CHARS = 1024;
/** A text or structure larger than this share of its budget is never remembered (it is lexed again each time it comes). */
const LARGEST_SHARE = 16;

/**
 * Bytes a remembered text costs, estimated on the safe side (measured under Bun: a 51-character
 * text with one constant ~540 bytes, one of 6,182 characters with 1,000 constants ~82 KB): the
 * text and its structure (as two-byte strings), each constant's string, the objects and the LRU's slot.
 */
function knownBytes(k: Known, text: string): number {
  const shape = k.shape!;
  let n = 2 * (text.length + shape.structure.length) + 512;
  for (const slot of shape.slots) n += typeof slot === "string" ? 64 + 2 * slot.length : 8;
  return n;
}

/** Bytes a remembered analysis costs, estimated the same way: its structure, the names it reads and writes, the objects. */
function analysisBytes(a: Analysis, structure: string): number {
  return 2 * structure.length + 64 * (a.reads.length + (a.writes === "all" ? 0 : a.writes.length)) + 512;
}

export interface MemoStats {
  texts: { entries: number; bytes: number; max_entries: number; max_bytes: number };
  structures: { entries: number; bytes: number; max_entries: number; max_bytes: number };
  templates: { entries: number; max_entries: number; max_text_chars: number };
}

/** `k` with the effects of the text at hand: the learned object itself when they agree (as they do for texts of one template), so nothing is allocated per request. */
export function withEffects(k: Known, fx: Effect): Known {
  return k.fx === fx ? k : { shape: null, analysis: k.analysis, fx };
}

export class StatementMemo {
  /**
   * Texts seen twice (a text that comes once, as a literal that changes each time does, is never
   * kept: it would only push out texts that come again, and leave garbage only a full collection frees).
   */
  private readonly byText = new LRUCache<string, Known>({ max: TEXTS_MAX, maxSize: TEXTS_MAX_BYTES, maxEntrySize: TEXTS_MAX_BYTES / LARGEST_SHARE, sizeCalculation: knownBytes });
  private readonly byStructure = new LRUCache<string, Analysis>({ max: STRUCTURES_MAX, maxSize: STRUCTURES_MAX_BYTES, maxEntrySize: STRUCTURES_MAX_BYTES / LARGEST_SHARE, sizeCalculation: analysisBytes });
  /** Texts with other literals than one already analysed (writes, reads in transactions) skip the lexer. */
  private readonly byTemplate = new TemplateIndex<Known>(TEMPLATES_MAX);
  private readonly seen = new SeenTexts();

  constructor(private readonly analyzer: Analyzer) {}

  /**
   * Analysis of a text, the parse done once per structure; `q`: the request whose text it is (its
   * views are used, and its template is looked for after `after`), else null. A text that differs from an analysed one only in its literals is
   * not lexed (its shape is left null).
   */
  known(text: string, q: QueryCtx | null, after: Learned<Known> | null = null): Known {
    const remembered = this.byText.get(text);
    if (remembered !== undefined) return remembered;
    const fx = q?.effects?.() ?? settingsEffects(text);
    // The request's own text: its bytes in place; another text: encoded.
    const learned = text.length > TEMPLATE_MAX_CHARS ? undefined : q !== null ? this.templated(q, after)?.value : this.byTemplate.find(text);
    if (learned !== undefined) return withEffects(learned, fx);
    const shape = shapeOf(text);
    let analysis = this.byStructure.get(shape.structure);
    if (analysis === undefined) {
      let tree: unknown = null;
      try {
        tree = q === null ? parseSql(text) : q.parse();
      } catch {
        tree = null;
      }
      analysis = this.analyzer.analyze(tree);
      this.byStructure.set(shape.structure, analysis);
    }
    const k: Known = { shape, analysis, fx };
    // Texts with constants come again with other literals (writes each time): their template. Texts that can never be served
    // (BEGIN, COMMIT, writes) also make one, so that their bytes find them; reads that may be served again are kept by text
    // when the text does come again.
    if (shape.spans !== null && text.length <= TEMPLATE_MAX_CHARS && (shape.spans.length > 0 || !analysis.cacheable)) {
      const l = this.byTemplate.remember(text, shape.spans, { shape: null, analysis, fx });
      if (l !== null) l.value.learned ??= l;
      k.learned = l;
    }
    if (shape.slots.length === 0 || analysis.cacheable) this.rememberAgain(text, k);
    return k;
  }

  /**
   * What is known of the request's own text by its bytes alone, when its template is known: nothing
   * decoded or lexed. `after`: the session's previous find (statements tend to follow the same order).
   */
  templated(q: QueryCtx, after: Learned<Known> | null): Learned<Known> | undefined {
    const span = this.span;
    if (q.sqlSpan !== undefined) q.sqlSpan(span);
    else {
      span.bytes = q.sqlBytes();
      span.from = 0;
      span.to = span.bytes.length;
    }
    const n = span.to - span.from;
    if (n === 0 || n > TEMPLATE_MAX_CHARS) return undefined;
    return this.byTemplate.learnedAt(span.bytes, span.from, span.to, after);
  }

  /** Where templated() finds the request's text (one object, filled per request). */
  private readonly span: ByteSpan = { bytes: new Uint8Array(0), from: 0, to: 0 };

  /** The shape of a text found by template, now needed (a cacheable read): kept by text when the text comes again. */
  lexed(text: string, k: Known): Shape {
    const shape = shapeOf(text);
    this.rememberAgain(text, { shape, analysis: k.analysis, fx: k.fx });
    return shape;
  }

  /** Keep `k` by its text from the second time the text comes. */
  private rememberAgain(text: string, k: Known): void {
    if (this.seen.again(text)) this.byText.set(text, k);
  }

  stats(): MemoStats {
    return {
      texts: { entries: this.byText.size, bytes: this.byText.calculatedSize, max_entries: TEXTS_MAX, max_bytes: TEXTS_MAX_BYTES },
      structures: { entries: this.byStructure.size, bytes: this.byStructure.calculatedSize, max_entries: STRUCTURES_MAX, max_bytes: STRUCTURES_MAX_BYTES },
      templates: { entries: this.byTemplate.size, max_entries: TEMPLATES_MAX, max_text_chars: TEMPLATE_MAX_CHARS },
    };
  }
}
