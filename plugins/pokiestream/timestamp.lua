
function receiver(packet_log)
    local parts = {}
    if packet_log.timestamp then
        table.insert(parts, "["..packet_log.timestamp.."]")
    end
    print(table.concat(parts, " "))
end

