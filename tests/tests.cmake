# Unit tests: one selftest per class, CZMQ style.
foreach (class sn_actor sn_routed sn_msg sn_json sn_schema sn_key sn_config sn_store sn_frontend sn_gateway
               sn_tokens
               sn_metrics
               sn_client sn_node sn_members sn_placement sn_mesh sn_queue
               sn_webhook sn_batch sn_dispatch sn_owners sn_replay sn_zap
               sn_idmap)
    add_test (NAME unit.${class} COMMAND sn_selftest ${class})
endforeach ()

# Short mutation fuzz runs of every decoder of outside input (see tests/sn_fuzz.c).
add_test (NAME fuzz.decoders COMMAND sn_fuzz 20000)

# Integration tests: real supernode processes on free loopback ports, spoken to over
# real HTTP, WebSocket and ZeroMQ by Python (Debian's python3-* packages).
file (GLOB SN_PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.py)
foreach (file ${SN_PY_TESTS})
    get_filename_component (name ${file} NAME_WE)
    add_test (NAME ${name}
              COMMAND ${SN_PYTHON} -m pytest -q -p no:cacheprovider -rs ${file}
              WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests)
    set_tests_properties (${name} PROPERTIES
        ENVIRONMENT "SUPERNODE_BIN=$<TARGET_FILE:supernode>;SN_SANITIZE=$<BOOL:${SN_SANITIZE}>")
endforeach ()

# What cmake --install puts in place is usable by a program that knows only pkg-config.
add_test (NAME install COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_install.sh ${CMAKE_BINARY_DIR}
                               "$<$<BOOL:${SN_SANITIZE}>:-fsanitize=address,undefined>")
