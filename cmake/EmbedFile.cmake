# Turns a text file into a C++ source defining one std::string_view, so the
# binary carries config/troupe.json as its built-in defaults (one source of
# truth for defaults: the file users read).
# Usage: cmake -DINPUT=... -DOUTPUT=... -DSYMBOL=... -P EmbedFile.cmake
file(READ "${INPUT}" _content)
set(_delim "TROUPE_EMBED")
file(WRITE "${OUTPUT}.tmp"
  "#include <string_view>\nnamespace troupe {\nextern const std::string_view ${SYMBOL};\n"
  "const std::string_view ${SYMBOL} = R\"${_delim}(${_content})${_delim}\";\n}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
