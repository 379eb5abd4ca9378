// The .tp language of netsor: tensor programs (NETSOR-T+, primer section 1).
//
// Statements end at a newline or ';'. Newlines inside ( ) and [ ] are ignored,
// so a covariance matrix or a long call may span lines. Loops, defs and
// imports exist only here: the lowering in src/parse/lower.cpp removes them.
grammar Netsor;

@lexer::members {
  int nesting = 0;  // depth of ( and [ : newlines inside them are not separators
}

program : sep* (stmt (sep+ stmt)*)? sep* EOF ;

sep : NL | ';' ;

block : '{' sep* (stmt (sep+ stmt)*)? sep* '}' ;

stmt
  : widthDecl
  | matrixDecl
  | vectorDecl
  | vectorsDecl
  | inputDecl
  | constDecl
  | defDecl
  | reportStmt
  | importStmt
  | forStmt
  | assignStmt
  | operatorDecl
  | spectrumStmt
  ;

// width m = 2 n   (ratio may also be written 2 * n, or omitted: width m = n; or a
// constant: width m = rho n)
widthDecl   : 'width' name=ID ('=' (ratio=(NUMBER | ID) '*'?)? base=ID)? ;
// In declarations a one-entry [..] naming a width is a size (v[m]); any other
// [..] is an index (W[l], x[0]). A matrix's shape is the two-entry [rows, cols].
matrixDecl  : 'matrix' target (LBRACK rows=dim ',' cols=dim RBRACK)? ':' dist ;
vectorDecl  : 'vector' target ':' dist ;
vectorsDecl : 'vectors' LPAREN target (',' target)* RPAREN (LBRACK size=dim RBRACK)? ':' dist ;
dim         : ID | NUMBER ;
dist        : ID LPAREN (kwarg (',' kwarg)*)? RPAREN ;
kwarg       : ID '=' expr ;
inputDecl   : 'input' target '=' expr ;
constDecl   : 'const' target '=' expr ;
defDecl     : 'def' name=ID LPAREN ID (',' ID)* RPAREN '=' expr ;
reportStmt  : 'report' target '=' expr ;
importStmt  : 'import' STRING ;
forStmt     : 'for' var=ID 'in' lo=expr '..' hi=expr block ;
assignStmt  : target '=' expr ;
target      : ID (LBRACK expr RBRACK)* ;
// operator S = J @ J.T        spectrum S        spectrum A.T @ A as mp
operatorDecl : 'operator' target '=' expr ;
spectrumStmt : 'spectrum' expr ('as' name=target)? ;

// Precedence, tightest first: .T, ^, unary -, @ (right assoc), * / %, + -.
// '@' binds tighter than '*' so that  0.5 * W @ x  means 0.5 * (W @ x).
expr
  : LPAREN expr RPAREN                                   # parenExpr
  | LBRACK (expr (',' expr)*)? RBRACK                    # listExpr
  | ID LPAREN (expr (',' expr)*)? RPAREN                 # callExpr
  | ID (LBRACK expr RBRACK)*                             # nameExpr
  | NUMBER                                               # numberExpr
  | expr TRANSPOSE                                       # transposeExpr
  | <assoc=right> expr '^' expr                          # powExpr
  | '-' expr                                             # negExpr
  | <assoc=right> expr '@' expr                          # matmulExpr
  | expr op=('*' | '/' | '%') expr                       # mulExpr
  | expr op=('+' | '-') expr                             # addExpr
  ;

TRANSPOSE : '.T' ;
LPAREN    : '(' { nesting++; } ;
RPAREN    : ')' { if (nesting > 0) nesting--; } ;
LBRACK    : '[' { nesting++; } ;
RBRACK    : ']' { if (nesting > 0) nesting--; } ;
NUMBER    : DIGITS ('.' DIGITS)? EXPONENT? | '.' DIGITS EXPONENT? ;
// A trailing prime names a derivative: tanh'(z), phi''(z).
ID        : [a-zA-Z_] [a-zA-Z0-9_]* '\''* ;
STRING    : '"' ~["\r\n]* '"' ;
COMMENT   : '#' ~[\r\n]* -> skip ;
CONTINUE  : '\\' [ \t]* '\r'? '\n' -> skip ;
NL        : '\r'? '\n' { if (nesting > 0) skip(); } ;
WS        : [ \t\f]+ -> skip ;
ERRCHAR   : . ;

fragment DIGITS   : [0-9]+ ;
fragment EXPONENT : [eE] [+-]? DIGITS ;
