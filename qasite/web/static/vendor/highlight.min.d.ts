// The part of highlight.js's API that code.js uses (the module is vendored: README.md).
export interface HighlightResult {
  value: string;
  language?: string;
  relevance: number;
}
export interface HLJSApi {
  highlightAuto(code: string, languageSubset?: string[]): HighlightResult;
}
declare const hljs: HLJSApi;
export default hljs;
