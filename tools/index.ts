export * from "./types";
export * from "./parse";
export { bashTool, sessionFailureMessage } from "./bash";
export { editTool, applyEdit, EDIT_PARSE_ERROR } from "./edit";
export { createTool } from "./create";
export { submitTool, submissionFeedback } from "./submit";
export { TOOLS, PROFILES, toolProfile, openAIFunctions, type ProfileName } from "./registry";
